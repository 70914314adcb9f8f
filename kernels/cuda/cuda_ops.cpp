#include "ferry/kernels/cuda/cuda_ops.cuh"

#include <cuda_fp16.h>

#include "ferry/kernels/cuda/attention.cuh"
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

void CudaOps::positions(int32_t* dst, int64_t n, int64_t start) { cuda::iota_positions(dst, n, start, m_stream); }

void CudaOps::rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions,
                   float freq_base, RopeMode mode) {
  cuda::rope(x, n_tokens, n_head, head_dim, positions, freq_base, mode, m_stream);
}

void CudaOps::store_kv(const float* k, const float* v, uint16_t* k_cache, uint16_t* v_cache, int64_t n_tokens,
                       int64_t pos0, int64_t row_width, int64_t capacity) {
  cuda::store_kv(k, v, as_half(k_cache), as_half(v_cache), n_tokens, pos0, row_width, capacity, m_stream);
}

void CudaOps::attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out,
                        std::span<std::byte> scratch) {
  cuda::attention(shape, q, as_half(k), as_half(v), out, cuda::AttentionScratch{scratch.data(), scratch.size()},
                  m_cublas, m_stream);
}

void CudaOps::silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  cuda::silu_mul(gate, up, y, n, m_stream);
}
void CudaOps::gelu_tanh(const float* x, float* y, int64_t n) { cuda::gelu_tanh(x, y, n, m_stream); }
void CudaOps::add(const float* a, const float* b, float* y, int64_t n) { cuda::add(a, b, y, n, m_stream); }
void CudaOps::add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) {
  cuda::add_bias(x, bias, y, rows, n, m_stream);
}

}  // namespace ferry
