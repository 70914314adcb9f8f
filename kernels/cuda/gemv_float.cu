// GEMV for unquantized weights (F16, BF16, F32; design note in gemv.cu). These rows are plain vectors, so each lane
// reads 16-byte vectors straight from global memory (read-only path) and no staging is needed: the loads are already
// as wide and coalesced as the quantized kernel's cp.async staging makes them.
#include <algorithm>
#include <cstdint>

#include "device_utils.cuh"
#include "ferry/kernels/cuda/check.cuh"
#include "gemv_common.cuh"

namespace ferry::cuda::detail {
namespace {

inline constexpr int kFloatGemvSmemBytes = 64 * 1024;

// 16 bytes from a 16-byte-aligned address, or as eight 2-byte loads.
__device__ __forceinline__ void ldg_16bytes(const uint8_t* p, bool aligned16, uint32_t* w) {
  if (aligned16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = ldg_u32_a2(p + 4 * i);
  }
}

// A float "unit" is a pseudo-block of 8 elements read as one 16-byte (F16, BF16) or two (F32) vectors; kE weights
// decoded in registers; x_off(part, j) is the element offset of weights 4j .. 4j+3; kSwapHalves: odd quads of lanes
// read their two x groups in the other order (and swap their decoded halves to match), which spreads the staged-x
// reads of 8 lanes over 8 different bank groups.
template <bool kBf16>
struct GemvUnitHalf {
  static constexpr int kQK = 8, kBytes = 16, kParts = 1, kE = 8, kAlign = 16, kUnroll = 2;
  static constexpr bool kSwapHalves = true;
  struct Raw {
    uint32_t v[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.v);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kBf16) {
        w[2 * i] = bf16_bits_to_float(r.v[i]);
        w[2 * i + 1] = bf16_bits_to_float(r.v[i] >> 16);
      } else {
        w[2 * i] = half_bits_to_float(r.v[i]);
        w[2 * i + 1] = half_bits_to_float(r.v[i] >> 16);
      }
    }
  }
  static __device__ __forceinline__ int x_off(int, int j) { return 4 * j; }
};
using GemvUnitF16 = GemvUnitHalf<false>;
using GemvUnitBf16 = GemvUnitHalf<true>;

struct GemvUnitF32 {
  static constexpr int kQK = 8, kBytes = 32, kParts = 1, kE = 8, kAlign = 16, kUnroll = 1;
  static constexpr bool kSwapHalves = true;
  struct Raw {
    uint32_t v[8];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.v);
    ldg_16bytes(b + 16, aligned, r.v + 4);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = __uint_as_float(r.v[i]);
  }
  static __device__ __forceinline__ int x_off(int, int j) { return 4 * j; }
};

// One CTA computes kGemvRowsPerCta consecutive rows; warp w rows row0 + 2w, +1. For each K segment the CTA stages
// x[0:T, seg] in shared memory (float, swizzled), then each lane walks units lane, lane + 32, ... of the segment:
// it loads kUnroll units of both rows into registers first (bytes in flight), then decodes each to kE floats and
// accumulates against the staged x for every token. A warp-shuffle reduction ends each row.
template <class U, int kT>
__global__ void __launch_bounds__(kGemvThreads)
    float_gemv_kernel(const uint8_t* __restrict__ w, int64_t row_bytes, int64_t n_rows, int64_t n_cols,
                      const float* __restrict__ x, int n_tok, float* __restrict__ y, int64_t seg_len, bool w_aligned,
                      bool x_vec) {
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
    stage_x(xs, x, n_tok, n_cols, s0, len, x_row_f4, x_vec);
    __syncthreads();
    if (!valid[0]) continue;  // the last CTA's spare warps still take part in the barriers

    const int units = len / U::kQK * U::kParts;
    const int64_t blk0 = s0 / U::kQK;
    for (int u0 = 0; u0 < units; u0 += 32 * U::kUnroll) {
      typename U::Raw raw[U::kUnroll][kRW] = {};
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

  gemv_reduce_store<kRW, kT>(acc, valid, row0, n_tok, n_rows, y);
}

template <class U, int kT>
void launch_float_gemv_t(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                         cudaStream_t stream) {
  constexpr int kFloats = kFloatGemvSmemBytes / 4;
  // Segment: all of K if it fits, else the largest multiple of 256 elements (every block size divides it).
  const int64_t cap = std::max<int64_t>(256, kFloats / n_tok / 256 * 256);
  const int64_t seg_len = std::min<int64_t>(w.n_cols, cap);
  const size_t smem = static_cast<size_t>(n_tok) * gemv_x_row_f4(seg_len) * 16;
  // Opting in to more than 48 KiB of dynamic shared memory is per kernel; once per process (ferry drives one GPU).
  static const bool configured = [] {
    FERRY_CUDA_CHECK(cudaFuncSetAttribute(float_gemv_kernel<U, kT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          kFloatGemvSmemBytes));
    return true;
  }();
  (void)configured;
  const auto addr = reinterpret_cast<uintptr_t>(w.data);
  const bool w_aligned = addr % U::kAlign == 0 && row_bytes % U::kAlign == 0;
  const bool x_vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 && w.n_cols % 4 == 0;
  const int64_t grid = (w.n_rows + kGemvRowsPerCta - 1) / kGemvRowsPerCta;
  float_gemv_kernel<U, kT><<<static_cast<unsigned>(grid), kGemvThreads, smem, stream>>>(
      static_cast<const uint8_t*>(w.data), row_bytes, w.n_rows, w.n_cols, x, n_tok, y, seg_len, w_aligned, x_vec);
  FERRY_CUDA_CHECK_LAUNCH();
}

// Picks the token-count bucket: kT is the register tile (acc[2][kT]); n_tok <= kT tokens run in it.
template <class U>
void launch_float_gemv(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream) {
  if (n_tok == 1) return launch_float_gemv_t<U, 1>(w, row_bytes, x, n_tok, y, stream);
  if (n_tok == 2) return launch_float_gemv_t<U, 2>(w, row_bytes, x, n_tok, y, stream);
  if (n_tok <= 4) return launch_float_gemv_t<U, 4>(w, row_bytes, x, n_tok, y, stream);
  return launch_float_gemv_t<U, 8>(w, row_bytes, x, n_tok, y, stream);
}

}  // namespace

bool launch_gemv_float(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream) {
  switch (w.type) {
    case GgmlType::F16:
      launch_float_gemv<GemvUnitF16>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::BF16:
      launch_float_gemv<GemvUnitBf16>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::F32:
      launch_float_gemv<GemvUnitF32>(w, row_bytes, x, n_tok, y, stream);
      return true;
    default:
      return false;
  }
}

}  // namespace ferry::cuda::detail
