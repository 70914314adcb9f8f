#include "op_checks.hpp"

#include <string>

#include "ferry/error.hpp"

namespace ferry::detail {
namespace {

[[noreturn]] void bad(const char* op, const std::string& what) {
  fail(ErrorCategory::INVALID_ARGUMENT, std::string(op) + ": " + what);
}

}  // namespace

void check_matmul(const char* op, const QuantMatrixView& w, const void* x, int64_t n_tokens, const void* y) {
  const TypeTraits& t = type_traits(w.type);  // throws UNSUPPORTED for an unknown id
  if (!t.dequantizable)
    fail(ErrorCategory::UNSUPPORTED, std::string(op) + ": weight type " + std::string(t.name) + " (id " +
                                         std::to_string(static_cast<uint32_t>(w.type)) + ") is not supported");
  if (w.n_cols <= 0 || w.n_cols % t.block_size != 0)
    bad(op, "weight row length " + std::to_string(w.n_cols) + " is not a positive multiple of the " +
                std::string(t.name) + " block size " + std::to_string(t.block_size));
  if (w.n_rows < 0) bad(op, "weight row count " + std::to_string(w.n_rows) + " is negative");
  if (n_tokens < 0) bad(op, "token count " + std::to_string(n_tokens) + " is negative");
  if (w.n_rows > 0 && w.data == nullptr) bad(op, "weight data is null for " + std::to_string(w.n_rows) + " rows");
  if (n_tokens > 0 && (x == nullptr || y == nullptr))
    bad(op, "input or output is null for " + std::to_string(n_tokens) + " tokens");
}

void check_rows(const char* op, int64_t rows, int64_t n) {
  if (rows < 0 || n < 0)
    bad(op, "shape [" + std::to_string(rows) + ", " + std::to_string(n) + "] has a negative dimension");
}

void check_rope(const char* op, int64_t n_tokens, int64_t n_head, int64_t head_dim) {
  if (n_tokens < 0 || n_head < 0 || head_dim <= 0 || head_dim % 2 != 0 || head_dim > kMaxHeadDim)
    bad(op, "shape [" + std::to_string(n_tokens) + ", " + std::to_string(n_head) + ", " + std::to_string(head_dim) +
                "] needs non-negative counts and a positive even head_dim of at most " + std::to_string(kMaxHeadDim));
}

void check_rope_multi_axis(const char* op, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* axes_dim,
                           int32_t n_axes) {
  check_rope(op, n_tokens, n_head, head_dim);
  if (n_axes <= 0 || axes_dim == nullptr) bad(op, "needs at least one axis, got " + std::to_string(n_axes));
  int64_t sum = 0;
  for (int32_t a = 0; a < n_axes; ++a) {
    if (axes_dim[a] <= 0 || axes_dim[a] % 2 != 0)
      bad(op, "axes_dim[" + std::to_string(a) + "] = " + std::to_string(axes_dim[a]) + " is not positive and even");
    sum += axes_dim[a];
  }
  if (sum != head_dim)
    bad(op, "axes_dim sums to " + std::to_string(sum) + ", expected head_dim " + std::to_string(head_dim));
}

void check_attention(const char* op, const AttentionShape& s) {
  if (s.n_q < 0 || s.n_kv < 0 || s.n_head <= 0 || s.n_kv_head <= 0 || s.head_dim <= 0)
    bad(op, "shape n_q " + std::to_string(s.n_q) + ", n_kv " + std::to_string(s.n_kv) + ", n_head " +
                std::to_string(s.n_head) + ", n_kv_head " + std::to_string(s.n_kv_head) + ", head_dim " +
                std::to_string(s.head_dim) + " has a negative or zero dimension");
  if (s.head_dim > kMaxHeadDim)
    bad(op, "head_dim " + std::to_string(s.head_dim) + " is above the supported " + std::to_string(kMaxHeadDim));
  if (s.n_head % s.n_kv_head != 0)
    bad(op, "n_head " + std::to_string(s.n_head) + " is not a multiple of n_kv_head " + std::to_string(s.n_kv_head));
  if (s.n_q > 0 && s.n_kv == 0) bad(op, std::to_string(s.n_q) + " queries attend to no keys (n_kv = 0)");
  if (s.causal && (s.q_pos0 < 0 || s.q_pos0 > s.n_kv - s.n_q))  // q_pos0 + n_q > n_kv, without overflow
    bad(op, "causal queries at positions " + std::to_string(s.q_pos0) + " .. " + std::to_string(s.q_pos0 + s.n_q - 1) +
                " need keys up to that position, but n_kv is " + std::to_string(s.n_kv));
}

void check_embedding(const char* op, const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens,
                     const float* out) {
  check_matmul(op, table, ids, n_tokens, out);
  for (int64_t t = 0; t < n_tokens; ++t)
    if (ids[t] < 0 || ids[t] >= table.n_rows)
      bad(op, "token " + std::to_string(t) + " has id " + std::to_string(ids[t]) + ", outside the table of " +
                  std::to_string(table.n_rows) + " rows");
}

}  // namespace ferry::detail
