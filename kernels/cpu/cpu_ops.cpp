#include "ferry/kernels/cpu/cpu_ops.hpp"

#include <cstring>
#include <string>

#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cpu/ops.hpp"

namespace ferry {

void CpuOps::matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  cpu::matmul(w, x, n_tokens, y);
}

void CpuOps::rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  cpu::rms_norm(x, weight, y, rows, n, eps);
}

void CpuOps::layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) {
  cpu::layer_norm(x, y, rows, n, eps);
}

void CpuOps::positions(int32_t* dst, int64_t n, int64_t start) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(start + i);
}

void CpuOps::rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions,
                  float freq_base, RopeMode mode) {
  cpu::rope(x, n_tokens, n_head, head_dim, positions, freq_base, mode);
}

void CpuOps::store_kv(const float* k, const float* v, uint16_t* k_cache, uint16_t* v_cache, int64_t n_tokens,
                      int64_t pos0, int64_t row_width, int64_t capacity) {
  if (pos0 < 0 || n_tokens < 0 || pos0 > capacity - n_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "store_kv: rows " + std::to_string(pos0) + " .. " +
                                              std::to_string(pos0 + n_tokens - 1) + " do not fit a cache of " +
                                              std::to_string(capacity) + " rows");
  const int64_t count = n_tokens * row_width;
  for (int64_t i = 0; i < count; ++i) {
    k_cache[pos0 * row_width + i] = fp32_to_fp16(k[i]);
    v_cache[pos0 * row_width + i] = fp32_to_fp16(v[i]);
  }
}

void CpuOps::attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out,
                       std::span<std::byte> /*scratch*/) {
  cpu::attention(shape, q, k, v, out);
}

void CpuOps::silu_mul(const float* gate, const float* up, float* y, int64_t n) { cpu::silu_mul(gate, up, y, n); }
void CpuOps::gelu_tanh(const float* x, float* y, int64_t n) { cpu::gelu_tanh(x, y, n); }
void CpuOps::add(const float* a, const float* b, float* y, int64_t n) { cpu::add(a, b, y, n); }
void CpuOps::add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) {
  cpu::add_bias(x, bias, y, rows, n);
}
void CpuOps::modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) {
  cpu::modulate(x, shift, scale, y, rows, n);
}
void CpuOps::gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) {
  cpu::gated_add(residual, gate, x, rows, n);
}
void CpuOps::rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                             std::span<const int32_t> axes_dim, float theta) {
  cpu::rope_multi_axis(x, n_tokens, n_head, head_dim, positions, axes_dim.data(), static_cast<int32_t>(axes_dim.size()),
                       theta);
}
void CpuOps::copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0 || src_stride < n || dst_stride < n)
    fail(ErrorCategory::INVALID_ARGUMENT, "copy_rows: " + std::to_string(rows) + " rows of " + std::to_string(n) +
                                              " with strides " + std::to_string(src_stride) + " and " +
                                              std::to_string(dst_stride));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dst_stride, src + r * src_stride, static_cast<size_t>(n) * sizeof(float));
}

}  // namespace ferry
