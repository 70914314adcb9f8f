#include "ferry/kernels/cuda/cuda_ops.cuh"

#include <cuda_fp16.h>

#include <algorithm>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/elementwise.cuh"
#include "ferry/kernels/cuda/norm.cuh"
#include "ferry/kernels/cuda/positions.cuh"
#include "ferry/kernels/cuda/rope.cuh"

namespace ferry {
namespace {

// The caches are FP16 on the device; Ops passes their bit patterns as uint16_t.
__half* as_half(uint16_t* p) { return reinterpret_cast<__half*>(p); }
const __half* as_half(const uint16_t* p) { return reinterpret_cast<const __half*>(p); }

}  // namespace

void CudaOps::matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  cuda::matmul(w, x, n_tokens, y, m_scratch, m_cublas, m_stream);
}

void CudaOps::matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens,
                           std::span<float* const> ys) {
  cuda::matmul_batch(ws, x, n_tokens, ys, m_scratch, m_cublas, m_stream);
}

void CudaOps::rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  cuda::rms_norm(x, weight, y, rows, n, eps, m_stream);
}

void CudaOps::layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) {
  cuda::layer_norm(x, y, rows, n, eps, m_stream);
}

void CudaOps::positions(int32_t* dst, int64_t n, int64_t start) {
  cuda::iota_positions(dst, n, start, m_stream, m_position);
}

void CudaOps::rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions,
                   float freq_base, RopeMode mode) {
  cuda::rope(x, n_tokens, n_head, head_dim, positions, freq_base, mode, m_stream);
}

void CudaOps::store_kv(const float* k, const float* v, uint16_t* k_cache, uint16_t* v_cache, int64_t n_tokens,
                       int64_t pos0, int64_t row_width, int64_t capacity) {
  cuda::store_kv(k, v, as_half(k_cache), as_half(v_cache), n_tokens, pos0, row_width, capacity, m_stream, m_position);
}

void CudaOps::attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out,
                        std::span<std::byte> scratch) {
  cuda::attention(shape, q, as_half(k), as_half(v), out, cuda::AttentionScratch{scratch.data(), scratch.size()},
                  m_cublas, m_stream, m_position);
}

void CudaOps::silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  cuda::silu_mul(gate, up, y, n, m_stream);
}
void CudaOps::gelu_tanh(const float* x, float* y, int64_t n) { cuda::gelu_tanh(x, y, n, m_stream); }
void CudaOps::add(const float* a, const float* b, float* y, int64_t n) { cuda::add(a, b, y, n, m_stream); }
void CudaOps::add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) {
  cuda::add_bias(x, bias, y, rows, n, m_stream);
}
void CudaOps::modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) {
  cuda::modulate(x, shift, scale, y, rows, n, m_stream);
}
void CudaOps::gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) {
  cuda::gated_add(residual, gate, x, rows, n, m_stream);
}
void CudaOps::rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                              std::span<const int32_t> axes_dim, float theta) {
  cuda::rope_multi_axis(x, n_tokens, n_head, head_dim, positions, axes_dim.data(),
                        static_cast<int32_t>(axes_dim.size()), theta, m_stream);
}
void CudaOps::copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0 || src_stride < n || dst_stride < n)
    fail(ErrorCategory::INVALID_ARGUMENT, "copy_rows: " + std::to_string(rows) + " rows of " + std::to_string(n) +
                                              " with strides " + std::to_string(src_stride) + " and " +
                                              std::to_string(dst_stride));
  if (rows == 0 || n == 0) return;
  // A strided device copy is what cudaMemcpy2DAsync does at copy-engine or SM speed; no kernel of our own needed.
  FERRY_CUDA_CHECK(cudaMemcpy2DAsync(
      dst, static_cast<size_t>(dst_stride) * sizeof(float), src, static_cast<size_t>(src_stride) * sizeof(float),
      static_cast<size_t>(n) * sizeof(float), static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, m_stream));
}

void CudaOps::rms_norm_matmul_batch(const float* x, const float* norm_weight, float eps,
                                    std::span<const QuantMatrixView> ws, int64_t n_tokens, std::span<float* const> ys,
                                    float* xn) {
  const auto alone = [&](const QuantMatrixView& w) {
    return w.n_cols == ws[0].n_cols && cuda::gemv_fusable(std::span(&w, 1), n_tokens);
  };
  if (!m_fused || ws.size() != ys.size() || !std::all_of(ws.begin(), ws.end(), alone))
    return Ops::rms_norm_matmul_batch(x, norm_weight, eps, ws, n_tokens, ys, xn);
  cuda::GemvFusion fusion;
  fusion.input = cuda::GemvFusion::Input::RMS_NORM;
  fusion.norm_weight = norm_weight;
  fusion.eps = eps;
  // One launch per run of matrices that share type and K (all of them, usually; Q4_K_M files keep v in Q6_K beside
  // q and k in Q4_K): each launch normalises x itself, so no run needs the normalised x in memory.
  for (size_t first = 0; first < ws.size();) {
    size_t end = first + 1;
    while (end < ws.size() && cuda::gemv_fusable(ws.subspan(first, end + 1 - first), n_tokens)) ++end;
    cuda::quant_gemv_fused(ws.subspan(first, end - first), x, n_tokens, ys.subspan(first, end - first), fusion,
                           m_stream);
    first = end;
  }
}

void CudaOps::matmul_add(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, float* tmp) {
  const std::span<const QuantMatrixView> ws(&w, 1);
  if (!m_fused || !cuda::gemv_fusable(ws, n_tokens)) return Ops::matmul_add(w, x, n_tokens, y, tmp);
  cuda::GemvFusion fusion;
  fusion.accumulate = true;
  cuda::quant_gemv_fused(ws, x, n_tokens, std::span<float* const>(&y, 1), fusion, m_stream);
}

void CudaOps::swiglu_matmul_add(const QuantMatrixView& w, float* gate, const float* up, int64_t n_tokens, float* y,
                                float* tmp) {
  const std::span<const QuantMatrixView> ws(&w, 1);
  if (!m_fused || !cuda::gemv_fusable(ws, n_tokens)) return Ops::swiglu_matmul_add(w, gate, up, n_tokens, y, tmp);
  cuda::GemvFusion fusion;
  fusion.input = cuda::GemvFusion::Input::SWIGLU;
  fusion.up = up;
  fusion.accumulate = true;
  cuda::quant_gemv_fused(ws, gate, n_tokens, std::span<float* const>(&y, 1), fusion, m_stream);
}

void CudaOps::rope_store_kv(float* q, float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                            int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, uint16_t* k_cache,
                            uint16_t* v_cache, int64_t capacity, int32_t* position_scratch) {
  if (!m_fused)
    return Ops::rope_store_kv(q, k, v, n_tokens, n_head, n_head_kv, head_dim, pos0, freq_base, mode, k_cache, v_cache,
                              capacity, position_scratch);
  cuda::rope_store_kv(q, k, v, n_tokens, n_head, n_head_kv, head_dim, pos0, freq_base, mode, as_half(k_cache),
                      as_half(v_cache), capacity, m_stream, m_position);
}

}  // namespace ferry
