// The quantized GEMV kernel template and its launcher (design note: gemv.cu). Instantiated per type family in
// gemv_q32.cu, gemv_k.cu and gemv_float.cu so no translation unit carries all 64 kernels.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/matrix.hpp"
#include "gemv_units.cuh"

namespace ferry::cuda::detail {

inline constexpr int kGemvWarps = 8;       // warps per CTA
inline constexpr int kGemvRowsPerWarp = 2;  // rows a warp computes together, sharing every x load
inline constexpr int kGemvThreads = 32 * kGemvWarps;
inline constexpr int kGemvRowsPerCta = kGemvWarps * kGemvRowsPerWarp;
// Shared memory for the staged activations. x is staged once per CTA and K segment; 64 KiB holds all of x for T = 1
// up to K = 16384 (every shape in the benchmark), and still lets three CTAs share an SM.
inline constexpr int kGemvSmemBytes = 64 * 1024;

// Float4 index swizzle of the staged x: XOR bit 2 with bit 3. Lanes of the 32-element types read float4 s and 4 + s
// of blocks b and b + 1 (quarter-warp = two blocks); without the swizzle both blocks' reads hit the same 16 banks.
// For lanes that read 8 consecutive float4s (K-quants, float types) it is a permutation inside the 8: still
// conflict-free. Rows are padded to a multiple of 8 float4s so the swizzle stays inside the row.
__device__ __forceinline__ int x_swizzle(int f4) { return f4 ^ ((f4 >> 1) & 4); }
__host__ __device__ inline int64_t gemv_x_row_f4(int64_t seg_len) { return (seg_len / 4 + 7) / 8 * 8; }

// One CTA computes kGemvRowsPerCta consecutive rows; warp w rows row0 + 2w, +1. For each K segment the CTA stages
// x[0:T, seg] in shared memory (float, swizzled), then each lane walks units lane, lane + 32, ... of the segment:
// it loads kUnroll units of both rows into registers first (bytes in flight), then decodes each to kE floats and
// accumulates against the staged x for every token. A warp-shuffle reduction ends each row.
template <GgmlType kType, int kT>
__global__ void __launch_bounds__(kGemvThreads)
    quant_gemv_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_rows, int64_t n_cols,
                      const float* __restrict__ x, int n_tok, float* __restrict__ y, int64_t seg_len, bool w_aligned,
                      bool x_vec) {
  using U = GemvUnit<kType>;
  constexpr int kRW = kGemvRowsPerWarp;
  extern __shared__ float4 xs[];
  const int lane = threadIdx.x % 32;
  const int64_t row0 = (static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / 32) * kRW;
  const int64_t x_row_f4 = gemv_x_row_f4(seg_len);

  const uint8_t* rows[kRW];
  bool valid[kRW];
#pragma unroll
  for (int r = 0; r < kRW; ++r) {
    valid[r] = row0 + r < n_rows;
    rows[r] = w + (valid[r] ? row0 + r : 0) * row_bytes;
  }
  float acc[kRW][kT];
#pragma unroll
  for (int r = 0; r < kRW; ++r)
#pragma unroll
    for (int t = 0; t < kT; ++t) acc[r][t] = 0.0f;

  for (int64_t s0 = 0; s0 < n_cols; s0 += seg_len) {
    const int len = static_cast<int>(min(seg_len, n_cols - s0));
    if (s0 > 0) __syncthreads();  // every warp is done with the previous segment
    for (int t = 0; t < n_tok; ++t) {
      float4* dst = xs + t * x_row_f4;
      const float* src = x + t * n_cols + s0;
      if (x_vec) {
        for (int i = threadIdx.x; i < len / 4; i += kGemvThreads)
          dst[x_swizzle(i)] = __ldg(reinterpret_cast<const float4*>(src) + i);
      } else {
        for (int i = threadIdx.x; i < len / 4; i += kGemvThreads)
          dst[x_swizzle(i)] = make_float4(src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]);
      }
    }
    __syncthreads();
    if (!valid[0]) continue;  // the last CTA's spare warps still take part in the barriers

    const int units = len / U::kQK * U::kParts;
    const int64_t blk0 = s0 / U::kQK;
    for (int u0 = 0; u0 < units; u0 += 32 * U::kUnroll) {
      typename U::Raw raw[U::kUnroll][kRW];
#pragma unroll
      for (int k = 0; k < U::kUnroll; ++k) {
        const int unit = u0 + 32 * k + lane;
        if (unit < units) {
#pragma unroll
          for (int r = 0; r < kRW; ++r)
            if (valid[r])
              raw[k][r] = U::load(rows[r] + (blk0 + unit / U::kParts) * U::kBytes, unit % U::kParts, w_aligned);
        }
      }
#pragma unroll
      for (int k = 0; k < U::kUnroll; ++k) {
        const int unit = u0 + 32 * k + lane;
        if (unit >= units) break;
        const int blk = unit / U::kParts, part = unit % U::kParts;
        float wv[kRW][U::kE];
#pragma unroll
        for (int r = 0; r < kRW; ++r)
          if (valid[r]) U::decode(raw[k][r], part, wv[r]);
        int swap = 0;
        if constexpr (U::kSwapHalves) {
          swap = (unit >> 2) & 1;
#pragma unroll
          for (int r = 0; r < kRW; ++r)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float a = wv[r][i], b = wv[r][4 + i];
              wv[r][i] = swap ? b : a;
              wv[r][4 + i] = swap ? a : b;
            }
        }
#pragma unroll
        for (int t = 0; t < kT; ++t) {
          if (t >= n_tok) break;
          const float4* xt = xs + t * x_row_f4;
#pragma unroll
          for (int j = 0; j < U::kE / 4; ++j) {
            const float4 xv = xt[x_swizzle((blk * U::kQK + U::x_off(part, j ^ swap)) / 4)];
#pragma unroll
            for (int r = 0; r < kRW; ++r) {
              float a = acc[r][t];
              a = fmaf(wv[r][4 * j], xv.x, a);
              a = fmaf(wv[r][4 * j + 1], xv.y, a);
              a = fmaf(wv[r][4 * j + 2], xv.z, a);
              a = fmaf(wv[r][4 * j + 3], xv.w, a);
              acc[r][t] = a;
            }
          }
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < kRW; ++r) {
#pragma unroll
    for (int t = 0; t < kT; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0 && valid[r] && t < n_tok) y[t * n_rows + row0 + r] = v;
    }
  }
}

template <GgmlType kType, int kT>
void launch_quant_gemv_t(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                         cudaStream_t stream) {
  using U = GemvUnit<kType>;
  constexpr int kFloats = kGemvSmemBytes / 4;
  // Segment: all of K if it fits, else the largest multiple of 256 elements (every block size divides it).
  const int64_t cap = std::max<int64_t>(256, kFloats / n_tok / 256 * 256);
  const int64_t seg_len = std::min<int64_t>(w.n_cols, cap);
  const size_t smem = static_cast<size_t>(n_tok) * gemv_x_row_f4(seg_len) * 16;
  // Opting in to more than 48 KiB of dynamic shared memory is per kernel; once per process (ferry drives one GPU).
  static const bool configured = [] {
    FERRY_CUDA_CHECK(cudaFuncSetAttribute(quant_gemv_kernel<kType, kT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          kGemvSmemBytes));
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

// Defined in the family files; each returns false for a type outside its family.
bool launch_gemv_q32(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                     cudaStream_t stream);
bool launch_gemv_k(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                   cudaStream_t stream);
bool launch_gemv_float(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream);

}  // namespace ferry::cuda::detail
