// The synthetic layer's GPU forward: the same five ops as forward_cpu, on the compute stream, with the scheduler's
// FP16 scratch for dequant_gemm.
#include <cuda_fp16.h>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/elementwise.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/cuda/norm.cuh"
#include "ferry/offload/synthetic_stack.hpp"

namespace ferry {

void SyntheticLayer::forward_gpu(std::span<const QuantMatrixView> w, float* x, int64_t n_tokens,
                                 const GpuLayerContext& context) const {
  if (w.size() != m_tensors.size() || context.workspace_floats < workspace_floats(n_tokens))
    fail(ErrorCategory::INTERNAL, "layer '" + m_name + "': forward_gpu given " + std::to_string(w.size()) +
                                      " weights and " + std::to_string(context.workspace_floats) +
                                      " workspace floats, needs 3 and " + std::to_string(workspace_floats(n_tokens)));
  cudaStream_t stream = context.stream;
  cublasHandle_t cublas = context.cublas;
  cuda::GemmScratch scratch;
  scratch.weight = static_cast<__half*>(context.fp16_weight_scratch);
  scratch.weight_elems = context.fp16_weight_scratch_elems;
  scratch.activations = static_cast<__half*>(context.fp16_activation_scratch);
  scratch.activation_elems = context.fp16_activation_scratch_elems;
  scratch.workspace = context.cublas_workspace;
  scratch.workspace_bytes = context.cublas_workspace_bytes;
  float* h = context.workspace;
  float* u = h + n_tokens * m_width;
  cuda::rms_norm(x, static_cast<const float*>(w[kNorm].data), h, n_tokens, m_width, m_eps, stream);
  cuda::matmul(w[kW1], h, n_tokens, u, scratch, cublas, stream);
  cuda::gelu_tanh(u, u, n_tokens * m_ffn, stream);
  cuda::matmul(w[kW2], u, n_tokens, h, scratch, cublas, stream);
  cuda::add(x, h, x, n_tokens * m_width, stream);
}

}  // namespace ferry
