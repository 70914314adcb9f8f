// Shared pieces of the GEMV kernels (design note: gemv.cu): CTA shape, the staged-x layout, and the per-family
// launchers' declarations.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda::detail {

inline constexpr int kGemvWarps = 8;        // warps per CTA
inline constexpr int kGemvRowsPerWarp = 2;  // rows a warp computes together, sharing every x load
inline constexpr int kGemvThreads = 32 * kGemvWarps;
inline constexpr int kGemvRowsPerCta = kGemvWarps * kGemvRowsPerWarp;
inline constexpr int kGemvBatchMax = 3;  // matrices one batched launch takes (q, k, v)

// Float4 index swizzle of the staged x: XOR bit 2 with bit 3. Lanes of the 32-element types read float4 s and 4 + s
// of blocks b and b + 1 (quarter-warp = two blocks); without the swizzle both blocks' reads hit the same 16 banks.
// For lanes that read 8 consecutive float4s (K-quants, float types) it is a permutation inside the 8: still
// conflict-free. Rows are padded to a multiple of 8 float4s so the swizzle stays inside the row.
__device__ __forceinline__ int x_swizzle(int f4) { return f4 ^ ((f4 >> 1) & 4); }
__host__ __device__ inline int64_t gemv_x_row_f4(int64_t seg_len) { return (seg_len / 4 + 7) / 8 * 8; }

// Stages x[0:T, s0 : s0 + len] (float32, row stride n_cols) into shared memory, swizzled.
__device__ __forceinline__ void stage_x(float4* xs, const float* __restrict__ x, int n_tok, int64_t n_cols, int64_t s0,
                                        int len, int64_t x_row_f4, bool x_vec) {
  for (int t = 0; t < n_tok; ++t) {
    float4* dst = xs + t * x_row_f4;
    const float* src = x + t * n_cols + s0;
    if (x_vec) {
      for (int i = threadIdx.x; i < len / 4; i += blockDim.x)
        dst[x_swizzle(i)] = __ldg(reinterpret_cast<const float4*>(src) + i);
    } else {
      for (int i = threadIdx.x; i < len / 4; i += blockDim.x)
        dst[x_swizzle(i)] = make_float4(src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]);
    }
  }
}

// Warp-shuffle sum of acc[r][t] and the store of y[t, row0 + r]: scaled by token_scale[t] when given (the fused RMS
// norm's 1 / rms), added to what y holds with `accumulate` (the value a separate add of the product would give).
template <int kRW, int kT>
__device__ __forceinline__ void gemv_reduce_store(float (&acc)[kRW][kT], const bool* valid, int64_t row0, int n_tok,
                                                  int64_t n_rows, float* __restrict__ y, bool accumulate = false,
                                                  const float* token_scale = nullptr) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kRW; ++r) {
#pragma unroll
    for (int t = 0; t < kT; ++t) {
      float v = acc[r][t];
#pragma unroll
      for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0 && valid[r] && t < n_tok) {
        if (token_scale != nullptr) v *= token_scale[t];
        float* out = y + t * n_rows + row0 + r;
        *out = accumulate ? *out + v : v;
      }
    }
  }
}

// Defined in the family files; each returns false for a type outside its family. launch_gemv_i8 (int8 activations,
// Q4_0 / Q8_0 / Q4_K / Q6_K) is tried first.
bool launch_gemv_i8(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                    cudaStream_t stream);
// Up to kGemvBatchMax matrices of one type and K against the same x in one launch (their row groups side by side in
// one grid): returns false when the type has no int8-activation kernel. row_bytes is the common row size.
bool launch_gemv_i8_batch(std::span<const QuantMatrixView> ws, int64_t row_bytes, const float* x, int n_tok,
                          std::span<float* const> ys, cudaStream_t stream);
// The types the int8-activation kernel has units for (launch_gemv_i8's, Q4_1 and Q5_K), and its batch launch with a
// fusion (GemvFusion); false outside those types or for 0 or more than kGemvBatchMax matrices.
bool gemv_i8_supported(GgmlType type) noexcept;
bool launch_gemv_i8_fused(std::span<const QuantMatrixView> ws, int64_t row_bytes, const float* x, int n_tok,
                          std::span<float* const> ys, const GemvFusion& fusion, cudaStream_t stream);
bool launch_gemv_q32(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                     cudaStream_t stream);
bool launch_gemv_k(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                   cudaStream_t stream);
bool launch_gemv_float(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream);

}  // namespace ferry::cuda::detail
