#include "ferry/kernels/device_sizing.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "cpu/op_checks.hpp"
#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"

namespace ferry::device_sizing {
namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

}  // namespace

bool gpu_can_dequantize(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

bool gemv_shape_supported(const QuantMatrixView& w) noexcept {
  if (!gpu_can_dequantize(w.type)) return false;  // every type with a block decoder has a GEMV unit
  // The float types are read in pseudo-blocks of 8 elements (one 16-byte vector of halves).
  const bool is_float = w.type == GgmlType::F16 || w.type == GgmlType::BF16 || w.type == GgmlType::F32;
  return !is_float || w.n_cols % 8 == 0;
}

bool matmul_uses_gemv(const QuantMatrixView& w, int64_t n_tokens) noexcept {
  return n_tokens >= 1 && n_tokens <= kGemvMaxTokens && gemv_shape_supported(w);
}

size_t gemm_min_weight_scratch(const QuantMatrixView& w) noexcept {
  if (w.n_rows <= 0 || w.n_cols <= 0) return 0;
  return static_cast<size_t>(std::min<int64_t>(w.n_rows, kGemmTileRowMultiple)) * static_cast<size_t>(w.n_cols);
}

size_t gemm_min_activation_scratch(const QuantMatrixView& w, int64_t n_tokens) noexcept {
  if (n_tokens <= 0 || w.n_cols <= 0) return 0;
  return static_cast<size_t>(std::min(n_tokens, kGemmMinTokenChunk)) * static_cast<size_t>(w.n_cols);
}

int64_t gemm_token_chunk(int64_t n_tokens, int64_t n_cols, size_t activation_elems) noexcept {
  if (n_tokens <= 0 || n_cols <= 0) return 0;
  const auto fit = static_cast<int64_t>(std::min<size_t>(activation_elems / static_cast<size_t>(n_cols),
                                                          static_cast<size_t>(n_tokens)));
  if (fit <= 0) return 0;
  const int64_t chunks = (n_tokens + fit - 1) / fit;
  return (n_tokens + chunks - 1) / chunks;
}

size_t gemm_activation_scratch_capped(const QuantMatrixView& w, int64_t n_tokens, size_t cap_elems) noexcept {
  if (n_tokens <= 0 || w.n_cols <= 0) return 0;
  const size_t k = static_cast<size_t>(w.n_cols);
  const size_t elems = std::max(cap_elems / k * k, gemm_min_activation_scratch(w, n_tokens));
  return static_cast<size_t>(gemm_token_chunk(n_tokens, w.n_cols, elems)) * k;
}

bool attention_decode_supported(const AttentionShape& s) noexcept {
  return s.head_dim > 0 && s.head_dim % 2 == 0 && s.head_dim <= kAttentionDecodeMaxHeadDim;
}

bool attention_uses_decode(const AttentionShape& s) noexcept {
  return s.n_q <= kAttentionDecodeMaxQueries && attention_decode_supported(s);
}

AttentionChunkLayout attention_chunk_layout(const AttentionShape& s, int64_t chunk) {
  AttentionChunkLayout l;
  const auto rows = checked_mul(static_cast<uint64_t>(chunk), static_cast<uint64_t>(s.n_head));
  const uint64_t ld = static_cast<uint64_t>(round_up(s.n_kv, 8));
  const uint64_t hd = static_cast<uint64_t>(s.head_dim);
  uint64_t offset = 0;
  auto place = [&](uint64_t& at, std::optional<uint64_t> bytes) {
    if (!bytes) {
      l.overflow = true;
      return;
    }
    const auto aligned = checked_align_up(offset, kScratchAlign);
    const auto end = aligned ? checked_add(*aligned, *bytes) : std::nullopt;
    if (!end) {
      l.overflow = true;
      return;
    }
    at = *aligned;
    offset = *end;
  };
  if (!rows) return AttentionChunkLayout{.overflow = true};
  place(l.qh, checked_mul(*rows, hd * 2));
  const auto score_elems = checked_mul(*rows, ld);
  place(l.scores, score_elems ? checked_mul(*score_elems, 4) : std::nullopt);
  place(l.o, checked_mul(*rows, hd * 4));
  place(l.inv_sum, checked_mul(*rows, 4));
  l.total = offset;
  return l;
}

AttentionDecodeLayout attention_decode_layout(const AttentionShape& s, int64_t n_splits) {
  AttentionDecodeLayout l;
  const auto rows =
      checked_mul(static_cast<uint64_t>(s.n_q) * static_cast<uint64_t>(s.n_head), static_cast<uint64_t>(n_splits));
  constexpr uint64_t kMaxSumPairBytes = 2 * sizeof(float);  // a float2 (max, sum) per row and split
  const auto ml_bytes = rows ? checked_mul(*rows, kMaxSumPairBytes) : std::nullopt;
  const auto acc_offset = ml_bytes ? checked_align_up(*ml_bytes, kScratchAlign) : std::nullopt;
  const auto acc_bytes = rows ? checked_mul(*rows, static_cast<uint64_t>(s.head_dim) * sizeof(float)) : std::nullopt;
  const auto total = acc_offset && acc_bytes ? checked_add(*acc_offset, *acc_bytes) : std::nullopt;
  if (!total) return AttentionDecodeLayout{.overflow = true};
  l.acc_offset = *acc_offset;
  l.total = *total;
  return l;
}

bool attention_flash_allowed() {
  const char* env = std::getenv("FERRY_ATTENTION_PATH");
  if (env == nullptr || *env == '\0' || std::strcmp(env, "flash") == 0) return true;
  if (std::strcmp(env, "chunked") == 0) return false;
  fail(ErrorCategory::INVALID_ARGUMENT,
       std::string("FERRY_ATTENTION_PATH='") + env + "': expected flash (fused kernel) or chunked (cuBLAS GEMMs)");
}

size_t attention_scratch_bytes(const AttentionShape& s, int64_t chunk_rows) {
  ferry::detail::check_attention("attention_scratch_bytes", s);
  if (attention_uses_decode(s)) {
    const AttentionDecodeLayout l = attention_decode_layout(s, kAttentionDecodeMaxSplits);
    if (l.overflow)
      fail(ErrorCategory::BUDGET, "attention: decode scratch for " + std::to_string(s.n_q) + " queries x " +
                                      std::to_string(kAttentionDecodeMaxSplits) + " splits overflows 64 bits");
    return l.total;
  }
  const AttentionChunkLayout l =
      attention_chunk_layout(s, std::clamp<int64_t>(chunk_rows, 1, std::max<int64_t>(s.n_q, 1)));
  if (l.overflow)
    fail(ErrorCategory::BUDGET, "attention: scratch for " + std::to_string(chunk_rows) + " query rows of " +
                                    std::to_string(s.n_kv) + " keys overflows 64 bits");
  return l.total;
}

}  // namespace ferry::device_sizing
