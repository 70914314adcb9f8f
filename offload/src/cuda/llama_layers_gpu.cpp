// The llama block and head on the GPU: the same sequence of ops as llama_block_forward_cpu, on the compute stream,
// with FP16 K/V in the layer's KV cache (arena memory) and every temporary carved from the layer's workspace.
#include <cmath>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/elementwise.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/cuda/norm.cuh"
#include "ferry/kernels/cuda/positions.cuh"
#include "ferry/kernels/cuda/rope.cuh"
#include "ferry/llama_cpu.hpp"
#include "ferry/offload/llama_layers.hpp"

namespace ferry {
namespace {

// Query rows per attention chunk: long prompts are processed in pieces so the score matrix stays small.
constexpr int64_t kAttentionChunkRows = 256;
constexpr size_t kFloatsPerPositionBlock = 64;  // positions get their own 256-byte-aligned run of the workspace

AttentionShape block_attention_shape(const LlamaConfig& c, int64_t n_tokens, int64_t n_kv, int64_t pos0) {
  return AttentionShape{n_tokens,     n_kv, c.n_head, c.n_head_kv,
                        c.head_dim(), pos0, true,     1.0f / std::sqrt(static_cast<float>(c.head_dim()))};
}

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

cuda::GemmScratch gemm_scratch(const GpuLayerContext& context) {
  cuda::GemmScratch s;
  s.weight = static_cast<__half*>(context.fp16_weight_scratch);
  s.weight_elems = context.fp16_weight_scratch_elems;
  s.activations = static_cast<__half*>(context.fp16_activation_scratch);
  s.activation_elems = context.fp16_activation_scratch_elems;
  s.workspace = context.cublas_workspace;
  s.workspace_bytes = context.cublas_workspace_bytes;
  return s;
}

}  // namespace

namespace {

size_t extra_floats_at(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx) {
  // The largest attention of a step: every query against the whole cache (the scratch does not depend on pos0).
  const AttentionShape shape = block_attention_shape(c, n_tokens, n_ctx, n_ctx - n_tokens);
  const size_t attention = cuda::attention_scratch_bytes(shape, std::min<int64_t>(n_tokens, kAttentionChunkRows));
  return round_up(static_cast<size_t>(n_tokens), kFloatsPerPositionBlock) + round_up(attention, 256) / sizeof(float);
}

}  // namespace

size_t llama_block_gpu_extra_floats(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx) {
  // A workspace sized for n_tokens serves every smaller step too, but the scratch is not monotone in the token count:
  // a few queries take the split-KV decode kernel, whose partial results can outgrow the chunked path's scores when
  // the context is short. So the most over the small counts and n_tokens itself.
  size_t most = extra_floats_at(c, n_tokens, n_ctx);
  for (int64_t t = 1; t < std::min<int64_t>(n_tokens, cuda::kAttentionDecodeMaxQueries + 1); ++t) most = std::max(most, extra_floats_at(c, t, n_ctx));
  return most;
}

void LlamaBlockLayer::forward_gpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                                  const GpuLayerContext& context) const {
  const LlamaConfig& c = m_config;
  const int64_t T = n_tokens, pos0 = m_step->pos0, kvw = c.n_embd_kv();
  if (weights.size() != COUNT || context.workspace_floats < workspace_floats(T))
    fail(ErrorCategory::INTERNAL, "layer '" + m_name + "': forward_gpu given too few weights or workspace floats");
  if (pos0 < 0 || pos0 + T > m_n_ctx)
    fail(ErrorCategory::INVALID_ARGUMENT, "layer '" + m_name + "': positions up to " + std::to_string(pos0 + T) +
                                              " exceed the KV cache of " + std::to_string(m_n_ctx));
  cudaStream_t stream = context.stream;
  cublasHandle_t cublas = context.cublas;
  const cuda::GemmScratch scratch = gemm_scratch(context);
  const LlamaLayerWeights w = rebind(weights);
  const LlamaBlockBuffers b = LlamaBlockBuffers::carve(c, T, context.workspace);
  float* after_buffers = context.workspace + LlamaBlockBuffers::workspace_floats(c, T);
  auto* positions = reinterpret_cast<int32_t*>(after_buffers);
  const size_t position_floats = round_up(static_cast<size_t>(T), kFloatsPerPositionBlock);
  const size_t extra_floats = llama_block_gpu_extra_floats(c, T, m_n_ctx);
  const cuda::AttentionScratch attention_scratch{after_buffers + position_floats,
                                                 (extra_floats - position_floats) * sizeof(float)};
  auto* k_cache = static_cast<__half*>(context.kv_cache);
  __half* v_cache = k_cache + m_n_ctx * kvw;

  cuda::iota_positions(positions, T, pos0, stream);
  cuda::rms_norm(x, w.attn_norm, b.xn, T, c.n_embd, c.rms_eps, stream);
  {  // q, k and v share xn: one GEMV launch for the three when they share a type (decode)
    const QuantMatrixView qkv[] = {w.wq, w.wk, w.wv};
    float* const qkv_out[] = {b.q, b.k, b.v};
    cuda::matmul_batch(qkv, b.xn, T, qkv_out, scratch, cublas, stream);
  }
  cuda::rope(b.q, T, c.n_head, c.head_dim(), positions, c.rope_freq_base, RopeMode::ADJACENT, stream);
  cuda::rope(b.k, T, c.n_head_kv, c.head_dim(), positions, c.rope_freq_base, RopeMode::ADJACENT, stream);
  cuda::store_kv(b.k, b.v, k_cache, v_cache, T, pos0, kvw, m_n_ctx, stream);
  cuda::attention(block_attention_shape(c, T, pos0 + T, pos0), b.q, k_cache, v_cache, b.attn, attention_scratch, cublas,
                  stream);
  cuda::matmul(w.wo, b.attn, T, b.proj, scratch, cublas, stream);
  cuda::add(x, b.proj, x, T * c.n_embd, stream);

  cuda::rms_norm(x, w.ffn_norm, b.xn, T, c.n_embd, c.rms_eps, stream);
  {
    const QuantMatrixView gate_up[] = {w.w_gate, w.w_up};
    float* const gate_up_out[] = {b.gate, b.up};
    cuda::matmul_batch(gate_up, b.xn, T, gate_up_out, scratch, cublas, stream);
  }
  cuda::silu_mul(b.gate, b.up, b.gate, T * c.n_ff, stream);
  cuda::matmul(w.w_down, b.gate, T, b.proj, scratch, cublas, stream);
  cuda::add(x, b.proj, x, T * c.n_embd, stream);
}

void LlamaHeadLayer::forward_gpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                                 const GpuLayerContext& context) const {
  if (weights.size() != COUNT || context.workspace_floats < workspace_floats(n_tokens))
    fail(ErrorCategory::INTERNAL, "layer '" + m_name + "': forward_gpu given too few weights or workspace floats");
  const int64_t first = first_logit_row(n_tokens);
  const int64_t rows = n_tokens - first;
  cuda::rms_norm(x + first * m_config.n_embd, static_cast<const float*>(weights[OUTPUT_NORM].data), context.workspace,
                 rows, m_config.n_embd, m_config.rms_eps, context.stream);
  cuda::matmul(weights[OUTPUT], context.workspace, rows, context.output, gemm_scratch(context), context.cublas,
               context.stream);
}

}  // namespace ferry
