// Argument checks shared by the reference ops and the CPU ops (and usable by any backend): the op contracts of
// ferry/kernels/ref/ops.hpp written once, so every backend refuses the same bad calls with the same message.
// Not a public header.
#pragma once

#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::detail {

// The largest head dimension the ops take (real models use 64-256). CPU kernels keep per-head scratch on the stack
// with this bound, so the per-token path allocates nothing.
inline constexpr int64_t kMaxHeadDim = 1024;

// Type dequantizable, n_cols a positive multiple of its block size, counts non-negative, pointers present where
// elements exist. `op` names the caller in messages ("cpu::matmul").
void check_matmul(const char* op, const QuantMatrixView& w, const void* x, int64_t n_tokens, const void* y);
void check_rows(const char* op, int64_t rows, int64_t n);
// head_dim even (RoPE rotates pairs) and at most kMaxHeadDim.
void check_rope(const char* op, int64_t n_tokens, int64_t n_head, int64_t head_dim);
// axes_dim entries even and positive, summing to head_dim.
void check_rope_multi_axis(const char* op, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* axes_dim,
                           int32_t n_axes);
// Heads divisible for GQA; with `causal`, every query position q_pos0 + i is inside the n_kv cached keys.
void check_attention(const char* op, const AttentionShape& s);
// Every id in [0, table.n_rows).
void check_embedding(const char* op, const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens,
                     const float* out);

}  // namespace ferry::detail
