// The quantized GEMV kernel template and its launcher (design note: gemv.cu). Instantiated per type family in
// gemv_q32.cu and gemv_k.cu so no translation unit carries all 48 kernels.
#pragma once

#include <cuda_pipeline_primitives.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/matrix.hpp"
#include "gemv_common.cuh"
#include "gemv_units.cuh"

namespace ferry::cuda::detail {

inline constexpr int kGemvStages = 4;  // chunks in flight: 3 being fetched while one is decoded
// Shared memory for staged x: all of x for T = 1 up to K = 14336 (every benchmark shape), so x is staged once.
inline constexpr int kGemvXBytes = 56 * 1024;

// Stage geometry of one type: a chunk of kChunk elements of one row is kChunkBytes contiguous bytes starting at any
// 2-byte boundary; it is fetched as the 16-byte-aligned pieces that cover it (kPieces at most) into a slot that keeps
// the global address modulo 16, so a block's alignment in shared memory equals its alignment in global memory.
template <class U>
struct GemvStage {
  static constexpr int kChunkBytes = U::kChunk / U::kQK * U::kBytes;
  static constexpr int kPieces = (kChunkBytes + 30 + 15) / 16;
  static constexpr int kSlot = kPieces * 16;
  static constexpr int kStageBytes = kGemvRowsPerCta * kSlot;
};

// One 16-byte piece of weights into shared memory: asynchronously when it lies inside [lo, hi) (the matrix), else
// the bytes that do, 2 at a time (only at the first and last bytes of a matrix that is not 16-byte aligned).
__device__ __forceinline__ void fetch_piece(uint8_t* dst, const uint8_t* src, const uint8_t* lo, const uint8_t* hi) {
  if (src >= lo && src + 16 <= hi) {
    __pipeline_memcpy_async(dst, src, 16);
  } else {
    for (int i = 0; i < 16; i += 2)
      if (src + i >= lo && src + i < hi) *reinterpret_cast<uint16_t*>(dst + i) = ldg_u16(src + i);
  }
}

// One CTA computes kGemvRowsPerCta consecutive rows (warp w: rows 2w, 2w + 1). x[0:T, K-segment] is staged in shared
// memory (float, swizzled); the rows' blocks stream through a kGemvStages-deep ring of shared-memory slots filled by
// 16-byte cp.async, so DRAM sees coalesced wide reads and always has 3 chunks (~28 KB per CTA) in flight, whatever
// the decode costs. Each lane decodes its units of a chunk (a fixed part of every kBlkStep-th block) for both rows and
// accumulates sc · Σ q·x (- mn · Σ x) per group for every token.
// (__launch_bounds__ minimum of 2 CTAs: the ring and x take ~110 KiB at most, two CTAs fit an H100 SM.)
template <GgmlType kType, int kT>
__global__ void __launch_bounds__(kGemvThreads, 2)
    quant_gemv_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_rows, int64_t n_cols,
                      const float* __restrict__ x, int n_tok, float* __restrict__ y, int64_t seg_len, bool w_aligned,
                      bool x_vec) {
  using U = GemvUnit<kType>;
  using G = GemvStage<U>;
  constexpr int kRW = kGemvRowsPerWarp;
  constexpr int kS = kGemvStages;
  extern __shared__ float4 smem4[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t cta_row0 = static_cast<int64_t>(blockIdx.x) * kGemvRowsPerCta;
  const int64_t row0 = cta_row0 + warp * kRW;
  const int64_t x_row_f4 = gemv_x_row_f4(seg_len);
  float4* xs = smem4;
  uint8_t* slots = reinterpret_cast<uint8_t*>(smem4 + n_tok * x_row_f4);
  const uint8_t* w_end = w + n_rows * row_bytes;

  // kParts divides 32, so a lane always decodes the same part of its blocks: lane l takes part l % kParts of blocks
  // l / kParts, + kBlkStep, ... of each chunk, and the part's x offsets are fixed for the whole kernel.
  constexpr int kBlkStep = 32 / U::kParts;
  constexpr int kUnitsPerLane = U::kChunk / U::kQK / kBlkStep;
  static_assert(32 % U::kParts == 0 && U::kChunk / U::kQK % kBlkStep == 0, "a chunk is whole steps of the warp");
  const int part = lane % U::kParts, blk_lane = lane / U::kParts;
  int x_off[U::kE / 4];
#pragma unroll
  for (int j = 0; j < U::kE / 4; ++j) x_off[j] = U::x_off(part, j);

  bool valid[kRW];
#pragma unroll
  for (int r = 0; r < kRW; ++r) valid[r] = row0 + r < n_rows;
  float acc[kRW][kT];
#pragma unroll
  for (int r = 0; r < kRW; ++r)
#pragma unroll
    for (int t = 0; t < kT; ++t) acc[r][t] = 0.0f;

  for (int64_t s0 = 0; s0 < n_cols; s0 += seg_len) {
    const int len = static_cast<int>(min(seg_len, n_cols - s0));
    const int n_chunks = (len + U::kChunk - 1) / U::kChunk;
    // Fetch chunk c of this segment (all rows of the CTA) into ring slot c % kS.
    auto issue = [&](int c) {
      if (c < n_chunks) {
        const int64_t byte0 = (s0 + static_cast<int64_t>(c) * U::kChunk) / U::kQK * U::kBytes;
        const int cb = min(U::kChunk, len - c * U::kChunk) / U::kQK * U::kBytes;
        uint8_t* stage = slots + (c % kS) * G::kStageBytes;
        for (int i = threadIdx.x; i < kGemvRowsPerCta * G::kPieces; i += kGemvThreads) {
          const int r = i / G::kPieces, p = i % G::kPieces;
          if (cta_row0 + r >= n_rows) continue;
          const uint8_t* start = w + (cta_row0 + r) * row_bytes + byte0;
          const uint8_t* src =
              reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(start) & ~uintptr_t{15}) + 16 * p;
          if (src < start + cb) fetch_piece(stage + r * G::kSlot + 16 * p, src, w, w_end);
        }
      }
      __pipeline_commit();  // an empty group past the end keeps the wait count below uniform
    };

    __syncthreads();  // every warp is done with the previous segment's x and slots
    for (int c = 0; c < kS - 1; ++c) issue(c);
    stage_x(xs, x, n_tok, n_cols, s0, len, x_row_f4, x_vec);

    for (int c = 0; c < n_chunks; ++c) {
      __pipeline_wait_prior(kS - 2);  // this thread's pieces of chunk c have landed
      __syncthreads();                // everyone's have, and everyone is done with chunk c - 1's slot
      issue(c + kS - 1);              // refills the slot chunk c - 1 used
      if (!valid[0]) continue;

      const int nblk = min(U::kChunk, len - c * U::kChunk) / U::kQK;  // blocks in this chunk (all but the last: full)
      const int64_t byte0 = (s0 + static_cast<int64_t>(c) * U::kChunk) / U::kQK * U::kBytes;
      const int blk_x0 = c * (U::kChunk / U::kQK);  // first block of the chunk, counted from the segment start
      const uint8_t* base[kRW];
#pragma unroll
      for (int r = 0; r < kRW; ++r) {
        // A row past the end (odd N) decodes its slot's stale bytes; its sums are never stored.
        const auto start = reinterpret_cast<uintptr_t>(w + (valid[r] ? row0 + r : row0) * row_bytes + byte0);
        base[r] = slots + (c % kS) * G::kStageBytes + (warp * kRW + r) * G::kSlot + (start & 15u);
      }
      // All of this lane's units of the chunk (kUnitsPerLane per row) are read first and decoded after, so their
      // shared-memory latencies overlap and the decodes form independent chains.
      typename U::Raw raw[kUnitsPerLane][kRW];
#pragma unroll
      for (int i = 0; i < kUnitsPerLane; ++i) {
        const int blk = blk_lane + i * kBlkStep;
        if (blk < nblk) {
#pragma unroll
          for (int r = 0; r < kRW; ++r) raw[i][r] = U::load(base[r] + blk * U::kBytes, part, w_aligned);
        }
      }
#pragma unroll
      for (int i = 0; i < kUnitsPerLane; ++i) {
        const int blk = blk_lane + i * kBlkStep;
        if (blk >= nblk) continue;
        float q[kRW][U::kE], sc[kRW][U::kE / 4], mn[kRW][U::kE / 4];
#pragma unroll
        for (int r = 0; r < kRW; ++r) U::decode(raw[i][r], part, q[r], sc[r], mn[r]);
        const int x_blk = (blk_x0 + blk) * U::kQK;
#pragma unroll
        for (int t = 0; t < kT; ++t) {
          if (t >= n_tok) break;
          const float4* xt = xs + t * x_row_f4;
#pragma unroll
          for (int j = 0; j < U::kE / 4; ++j) {
            const float4 xv = xt[x_swizzle((x_blk + x_off[j]) / 4)];
            const float xsum = U::kHasMin ? (xv.x + xv.y) + (xv.z + xv.w) : 0.0f;
#pragma unroll
            for (int r = 0; r < kRW; ++r) {
              const float s =
                  fmaf(q[r][4 * j], xv.x, q[r][4 * j + 1] * xv.y) + fmaf(q[r][4 * j + 2], xv.z, q[r][4 * j + 3] * xv.w);
              acc[r][t] = fmaf(sc[r][j], s, acc[r][t]);
              if constexpr (U::kHasMin) acc[r][t] = fmaf(-mn[r][j], xsum, acc[r][t]);
            }
          }
        }
      }
    }
  }
  __pipeline_wait_prior(0);
  gemv_reduce_store<kRW, kT>(acc, valid, row0, n_tok, n_rows, y);
}

template <GgmlType kType, int kT>
void launch_quant_gemv_t(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                         cudaStream_t stream) {
  using U = GemvUnit<kType>;
  using G = GemvStage<U>;
  // Segment: all of K if x fits, else the largest multiple of 256 elements (every block size divides it) that does.
  const int64_t cap = std::max<int64_t>(256, kGemvXBytes / 4 / n_tok / 256 * 256);
  const int64_t seg_len = std::min<int64_t>(w.n_cols, cap);
  const size_t smem =
      static_cast<size_t>(n_tok) * gemv_x_row_f4(seg_len) * 16 + static_cast<size_t>(kGemvStages) * G::kStageBytes;
  // Opting in to more than 48 KiB of dynamic shared memory is per kernel; once per process (ferry drives one GPU).
  static const bool configured = [] {
    FERRY_CUDA_CHECK(cudaFuncSetAttribute(quant_gemv_kernel<kType, kT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          kGemvXBytes + kGemvStages * G::kStageBytes + 1024));
    return true;
  }();
  (void)configured;
  const auto addr = reinterpret_cast<uintptr_t>(w.data);
  const bool w_aligned = addr % U::kAlign == 0 && row_bytes % U::kAlign == 0;
  const bool x_vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 && w.n_cols % 4 == 0;
  const int64_t grid = (w.n_rows + kGemvRowsPerCta - 1) / kGemvRowsPerCta;
  quant_gemv_kernel<kType, kT><<<static_cast<unsigned>(grid), kGemvThreads, smem, stream>>>(
      static_cast<const uint8_t*>(w.data), row_bytes, w.n_rows, w.n_cols, x, n_tok, y, seg_len, w_aligned, x_vec);
  FERRY_CUDA_CHECK_LAUNCH();
}

// Picks the token-count bucket: kT is the register tile (acc[2][kT]); n_tok <= kT tokens run in it.
template <GgmlType kType>
void launch_quant_gemv(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream) {
  if (n_tok == 1) return launch_quant_gemv_t<kType, 1>(w, row_bytes, x, n_tok, y, stream);
  if (n_tok == 2) return launch_quant_gemv_t<kType, 2>(w, row_bytes, x, n_tok, y, stream);
  if (n_tok <= 4) return launch_quant_gemv_t<kType, 4>(w, row_bytes, x, n_tok, y, stream);
  return launch_quant_gemv_t<kType, 8>(w, row_bytes, x, n_tok, y, stream);
}

}  // namespace ferry::cuda::detail
