// Ops' default members: the composite operations spelled out as the sequences of plain ops they stand for, so every
// backend has them and a backend overrides only what it can fuse.
#include "ferry/kernels/ops.hpp"

#include <string>

#include "ferry/error.hpp"

namespace ferry {

void Ops::matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens,
                       std::span<float* const> ys) {
  if (ws.size() != ys.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "matmul_batch: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  for (size_t i = 0; i < ws.size(); ++i) matmul(ws[i], x, n_tokens, ys[i]);
}

void Ops::rms_norm_matmul_batch(const float* x, const float* norm_weight, float eps,
                                std::span<const QuantMatrixView> ws, int64_t n_tokens, std::span<float* const> ys,
                                float* xn) {
  if (ws.empty()) return;
  rms_norm(x, norm_weight, xn, n_tokens, ws[0].n_cols, eps);
  matmul_batch(ws, xn, n_tokens, ys);
}

void Ops::matmul_add(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, float* tmp) {
  matmul(w, x, n_tokens, tmp);
  add(y, tmp, y, n_tokens * w.n_rows);
}

void Ops::swiglu_matmul_add(const QuantMatrixView& w, float* gate, const float* up, int64_t n_tokens, float* y,
                            float* tmp) {
  silu_mul(gate, up, gate, n_tokens * w.n_cols);
  matmul_add(w, gate, n_tokens, y, tmp);
}

void Ops::rope_store_kv(float* q, float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                        int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, uint16_t* k_cache,
                        uint16_t* v_cache, int64_t capacity, int32_t* position_scratch) {
  positions(position_scratch, n_tokens, pos0);
  rope(q, n_tokens, n_head, head_dim, position_scratch, freq_base, mode);
  rope(k, n_tokens, n_head_kv, head_dim, position_scratch, freq_base, mode);
  store_kv(k, v, k_cache, v_cache, n_tokens, pos0, n_head_kv * head_dim, capacity);
}

}  // namespace ferry
