// The CUDA kernels' choices and scratch sizes as plain arithmetic: which matrices take the GEMV and which the
// dequantize + GEMM path, how much FP16 weight scratch one GEMM tile needs, how much scratch attention takes. Compiled
// into the CPU library, so layers (runtime/) and planners (policies/) can size device memory on any machine, without
// CUDA headers and without a GPU, and get exactly what the kernels will ask for: the CUDA entry points with the same
// names in ferry::cuda call these.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::device_sizing {

// Token counts up to this take the quantized GEMV; above it, dequantize-to-FP16 + cuBLAS GEMM.
inline constexpr int64_t kGemvMaxTokens = 8;
// A GEMM tile of dequantized weight is a multiple of this many rows (or the whole matrix when it has fewer).
inline constexpr int64_t kGemmTileRowMultiple = 64;
// Attention takes the split-KV decode kernel up to this many queries, for even head_dim up to kDecodeMaxHeadDim.
inline constexpr int64_t kAttentionDecodeMaxQueries = 8;
inline constexpr int64_t kAttentionDecodeMaxHeadDim = 256;
// The most KV splits the decode path uses (its partials scratch grows with it).
inline constexpr int64_t kAttentionDecodeMaxSplits = 64;
// Regions inside an attention scratch start at multiples of this.
inline constexpr uint64_t kScratchAlign = 256;

// GGML types with a GPU block decoder (dequantize, GEMV).
bool gpu_can_dequantize(GgmlType type) noexcept;
// The GEMV kernel reads this matrix (its type, and for float types a row length in whole 16-byte vectors).
bool gemv_shape_supported(const QuantMatrixView& w) noexcept;
// cuda::matmul takes the GEMV (no scratch) rather than the GEMM for this many tokens.
bool matmul_uses_gemv(const QuantMatrixView& w, int64_t n_tokens) noexcept;
// FP16 elements of the smallest weight tile dequant_gemm accepts.
size_t gemm_min_weight_scratch(const QuantMatrixView& w) noexcept;
// FP16 elements of x for dequant_gemm converting all n_tokens rows at once (no token chunks).
inline size_t gemm_activation_scratch(const QuantMatrixView& w, int64_t n_tokens) noexcept {
  return static_cast<size_t>(n_tokens) * static_cast<size_t>(w.n_cols);
}
// dequant_gemm converts x to FP16 in chunks of tokens when its activation scratch holds fewer than all n_tokens rows:
// the chunks are balanced (ceil(T / chunks) rows each, the last one shorter), so a scratch of ceil(T / c) rows serves
// c chunks. It accepts no fewer rows than this (or T, if smaller): a GEMM of a few tokens wastes the tensor cores.
inline constexpr int64_t kGemmMinTokenChunk = 64;
// The smallest activation scratch dequant_gemm accepts for n_tokens rows, in elements.
size_t gemm_min_activation_scratch(const QuantMatrixView& w, int64_t n_tokens) noexcept;
// Rows per token chunk dequant_gemm uses for n_tokens with `activation_elems` of scratch (n_tokens when all fit).
int64_t gemm_token_chunk(int64_t n_tokens, int64_t n_cols, size_t activation_elems) noexcept;
// The activation scratch, in elements, that sizing gives a GEMM of n_tokens rows when at most `cap_elems` are
// wanted: the balanced chunk of the fewest chunks within the cap (never below the kernel's minimum).
size_t gemm_activation_scratch_capped(const QuantMatrixView& w, int64_t n_tokens, size_t cap_elems) noexcept;

// The environment's FERRY_ATTENTION_PATH: unset, empty or "flash" lets cuda::attention take the flash path (where the
// device and shape allow it); "chunked" keeps it on the cuBLAS path, to compare the two. INVALID_ARGUMENT naming the
// variable for any other value. Read on every call (the CUDA side reads it once per process).
bool attention_flash_allowed();
// True when cuda::attention takes the decode path for this shape.
bool attention_uses_decode(const AttentionShape& shape) noexcept;
bool attention_decode_supported(const AttentionShape& shape) noexcept;

// Byte offsets of the chunked attention path's buffers in its scratch, for chunks of `chunk` query rows.
struct AttentionChunkLayout {
  uint64_t qh = 0;       // FP16 [n_kv_head][chunk * group][head_dim]
  uint64_t scores = 0;   // FP32 [n_kv_head][chunk * group][ld], ld = n_kv rounded up to 8; P (FP16) overlays it
  uint64_t o = 0;        // FP32 [n_kv_head][chunk * group][head_dim]
  uint64_t inv_sum = 0;  // FP32 [n_kv_head][chunk * group]
  uint64_t total = 0;
  bool overflow = false;
};
AttentionChunkLayout attention_chunk_layout(const AttentionShape& shape, int64_t chunk);

// The decode path's partial results: (max, sum) pairs then accumulators, for n_splits splits of the KV length.
struct AttentionDecodeLayout {
  uint64_t acc_offset = 0;
  uint64_t total = 0;
  bool overflow = false;
};
AttentionDecodeLayout attention_decode_layout(const AttentionShape& shape, int64_t n_splits);

// The scratch cuda::attention uses at most for `shape` with chunks of up to chunk_rows query rows: the decode path's
// partials for kAttentionDecodeMaxSplits splits when it takes that path, else one chunk's buffers. Throws BUDGET when
// the size overflows 64 bits, INVALID_ARGUMENT for an impossible shape.
size_t attention_scratch_bytes(const AttentionShape& shape, int64_t chunk_rows);

}  // namespace ferry::device_sizing
