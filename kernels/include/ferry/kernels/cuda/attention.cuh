// Softmax attention over an FP16 KV cache on the GPU, and the helper that writes the cache.
// Shapes as ferry::AttentionShape (ferry/kernels/matrix.hpp): q float32 [n_q, n_head, head_dim], k and v FP16
// [n_kv, n_kv_head, head_dim], out float32 [n_q, n_head, head_dim]; all device pointers.
// Three paths (design notes and rooflines at the top of kernels/cuda/attention*.cu):
// - flash: one fused tensor-core kernel; scores live in registers only, no scratch (head_dim 64 or 128).
// - chunked: query rows in chunks sized from a caller-given scratch; per chunk S = Q Kᵀ and O = P V as cuBLAS
//   strided-batched FP16 GEMMs on tensor cores with a softmax kernel in between. Scores exist for one chunk only.
// - decode: a bandwidth-bound kernel over the cache (online softmax, FP32 accumulation), split over the KV length when
//   the cache is long and the scratch allows.
// attention() picks the path; the other entry points let tests and benchmarks force one.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "ferry/kernels/cuda/step_position.cuh"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda {

// attention() takes the decode path up to this many queries (token generation, small speculative batches).
inline constexpr int64_t kAttentionDecodeMaxQueries = device_sizing::kAttentionDecodeMaxQueries;
// The decode kernel's limits; other shapes take the chunked path whatever n_q is.
inline constexpr int64_t kAttentionDecodeMaxHeadDim = device_sizing::kAttentionDecodeMaxHeadDim;  // even head_dim only
// The most KV splits the decode path uses (partials scratch grows with it).
inline constexpr int64_t kAttentionDecodeMaxSplits = device_sizing::kAttentionDecodeMaxSplits;

// Device scratch sub-allocated by the caller (the arena); 256-byte aligned. The chunked path needs at least
// attention_scratch_bytes(shape, 1) for a shape that does not take the decode path (for one that does, that call
// returns the decode partials' size, not the chunked path's); the decode path runs with any size, even none, and splits
// the KV length over more blocks when it is given attention_scratch_bytes(shape, ...) bytes.
struct AttentionScratch {
  void* data = nullptr;
  size_t bytes = 0;
};

// True when attention() takes the decode path for this shape.
bool attention_uses_decode(const AttentionShape& shape) noexcept;
// Bytes of scratch attention() wants for this shape: on the chunked path, what a chunk of chunk_rows query rows
// (clamped to [1, n_q]) needs; on the decode path, the partial results of kAttentionDecodeMaxSplits splits
// (chunk_rows is ignored there). Throws INVALID_ARGUMENT for a bad shape, BUDGET if the size overflows.
size_t attention_scratch_bytes(const AttentionShape& shape, int64_t chunk_rows);
// The largest chunk (query rows, at most n_q) whose chunked-path scratch fits in scratch_bytes; 0 if not even one row.
int64_t attention_max_chunk(const AttentionShape& shape, size_t scratch_bytes);

// Picks the path: decode for few queries, else flash where attention_flash_supported (unless the environment has
// FERRY_ATTENTION_PATH=chunked, read once per process, for comparisons), else chunked. On the chunked path it takes
// the largest chunk the scratch holds, except that long causal runs (n_q >= 1024) use at least 4 chunks so the masked
// triangle is mostly skipped. Throws BUDGET (naming the bytes needed for one row) when the chunked path is taken and
// the scratch cannot hold one query row. Sets cublas's stream to `stream`.
// With an active `position` (a step captured for replay) only the decode path is allowed (UNSUPPORTED otherwise).
void attention(const AttentionShape& shape, const float* q, const __half* k, const __half* v, float* out,
               const AttentionScratch& scratch, cublasHandle_t cublas, cudaStream_t stream,
               DevicePosition position = {});
// The chunked (tensor-core) path with at most chunk_rows query rows per chunk; chunk_rows is clamped to
// attention_max_chunk(shape, scratch.bytes), and BUDGET is thrown if that is 0.
void attention_chunked(const AttentionShape& shape, const float* q, const __half* k, const __half* v, float* out,
                       const AttentionScratch& scratch, int64_t chunk_rows, cublasHandle_t cublas, cudaStream_t stream);
// The flash path: needs no scratch. Throws UNSUPPORTED where attention_flash_supported is false.
void attention_flash(const AttentionShape& shape, const float* q, const __half* k, const __half* v, float* out,
                     cudaStream_t stream);
// head_dim 64 or 128, q and out 8-byte aligned, k and v 16-byte aligned, at most 65535 heads, a device of compute
// capability 8.0 or above (the current one).
bool attention_flash_supported(const AttentionShape& shape, const void* q, const void* k, const void* v,
                               const void* out) noexcept;
// The decode path, for any n_q (efficient for few queries). Throws UNSUPPORTED for an odd head_dim or one above
// kAttentionDecodeMaxHeadDim.
// `position` shifts n_kv and q_pos0 by the replayed step's position (step_position.cuh); the KV length is split for
// the largest key count the step can see (kAttentionDecodeSplitGranule below), the same whether the step is replayed
// or not, so a replay computes bit for bit what a direct call at its position does.
void attention_decode(const AttentionShape& shape, const float* q, const __half* k, const __half* v, float* out,
                      const AttentionScratch& scratch, cudaStream_t stream, DevicePosition position = {});
// The decode path splits the KV length as if it held the visible key count rounded up to a multiple of this: every
// step of a 256-position bucket gets the same split layout (those keys beyond the visible ones are never read).
inline constexpr int64_t kAttentionDecodeSplitGranule = 256;

// KV-cache write: rows pos0 .. pos0 + n_tokens - 1 of k_cache and v_cache ([capacity, row_width] FP16, row_width =
// n_kv_head * head_dim) become k and v ([n_tokens, row_width] float32), rounded to nearest (values beyond the FP16
// range become infinities). Rows past `capacity` (the cache's rows) are refused with INVALID_ARGUMENT.
// `position` shifts pos0 in a replayed step; rows that would then pass the cache's end are not written.
void store_kv(const float* k, const float* v, __half* k_cache, __half* v_cache, int64_t n_tokens, int64_t pos0,
              int64_t row_width, int64_t capacity, cudaStream_t stream, DevicePosition position = {});

}  // namespace ferry::cuda
