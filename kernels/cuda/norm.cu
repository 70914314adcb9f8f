// RMSNorm and LayerNorm (no affine) on the GPU.
//
// Roofline: one read and one write of each element (the second and third passes over a row re-read it from L1/L2, not
// DRAM), so the ideal time is 8 bytes per element at the device's copy bandwidth; the arithmetic is negligible.
// Technique: rows up to kWarpRowMax elements get one warp each, eight rows per block (Flux's per-head q/k norm has
// n = 128 and ~110k rows: a block per row would leave most threads idle); longer rows get a 256-thread block each.
// Sums are FP32 per thread, then a shuffle tree. LayerNorm takes the mean first and then sum((x - mean)^2), the
// two-pass form, because E[x^2] - mean^2 cancels catastrophically for rows with a large mean.
// Invariant: each row is read completely before any of its outputs is written, so y may alias x.
#include "ferry/kernels/cuda/norm.cuh"

#include <algorithm>
#include <string>

#include "../cpu/op_checks.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "reduce.cuh"

namespace ferry::cuda {
namespace {

using detail::block_sum;
using detail::kWarpSize;
using detail::warp_sum;

constexpr int64_t kWarpRowMax = 1024;
constexpr int kWarpRowThreads = 256;  // 8 rows per block
constexpr int kBlockRowThreads = 256;
constexpr int64_t kMaxGridRows = 1 << 20;  // rows beyond this are covered by a grid-stride loop

// One warp per row. kLayer: LayerNorm (subtract the mean, no weight); otherwise RMSNorm with an optional weight.
template <bool kLayer>
__global__ void norm_warp_kernel(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_per_block = blockDim.x / kWarpSize;
  for (int64_t row = blockIdx.x * warps_per_block + threadIdx.x / kWarpSize; row < rows;
       row += static_cast<int64_t>(gridDim.x) * warps_per_block) {
    const float* xr = x + row * n;
    float* yr = y + row * n;
    float mean = 0.0f;
    if constexpr (kLayer) {
      float s = 0.0f;
      for (int64_t i = lane; i < n; i += kWarpSize) s += xr[i];
      mean = warp_sum(s) / static_cast<float>(n);
    }
    float ss = 0.0f;
    for (int64_t i = lane; i < n; i += kWarpSize) {
      const float d = xr[i] - mean;
      ss += d * d;
    }
    const float inv = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(n) + eps);
    for (int64_t i = lane; i < n; i += kWarpSize) {
      const float v = (xr[i] - mean) * inv;
      yr[i] = (!kLayer && weight != nullptr) ? v * weight[i] : v;
    }
  }
}

// One block per row, for long rows.
template <bool kLayer>
__global__ void norm_block_kernel(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  __shared__ float scratch[kWarpSize];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const float* xr = x + row * n;
    float* yr = y + row * n;
    float mean = 0.0f;
    if constexpr (kLayer) {
      float s = 0.0f;
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
      mean = block_sum(s, scratch) / static_cast<float>(n);
    }
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float d = xr[i] - mean;
      ss += d * d;
    }
    const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / static_cast<float>(n) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const float v = (xr[i] - mean) * inv;
      yr[i] = (!kLayer && weight != nullptr) ? v * weight[i] : v;
    }
  }
}

template <bool kLayer>
void launch_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps,
                 cudaStream_t stream) {
  if (n <= kWarpRowMax) {
    const int64_t rows_per_block = kWarpRowThreads / kWarpSize;
    const int64_t blocks = std::min<int64_t>((rows + rows_per_block - 1) / rows_per_block, kMaxGridRows);
    norm_warp_kernel<kLayer><<<static_cast<unsigned>(blocks), kWarpRowThreads, 0, stream>>>(x, weight, y, rows, n, eps);
  } else {
    const int64_t blocks = std::min<int64_t>(rows, kMaxGridRows);
    norm_block_kernel<kLayer>
        <<<static_cast<unsigned>(blocks), kBlockRowThreads, 0, stream>>>(x, weight, y, rows, n, eps);
  }
  FERRY_CUDA_CHECK_LAUNCH();
}

void check_pointers(const char* op, const void* x, const void* y, int64_t rows, int64_t n) {
  if (rows > 0 && n > 0 && (x == nullptr || y == nullptr))
    fail(ErrorCategory::INVALID_ARGUMENT, std::string(op) + ": input or output is null for shape [" +
                                              std::to_string(rows) + ", " + std::to_string(n) + "]");
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::rms_norm", rows, n);
  check_pointers("cuda::rms_norm", x, y, rows, n);
  if (rows == 0 || n == 0) return;
  launch_norm<false>(x, weight, y, rows, n, eps, stream);
}

void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps, cudaStream_t stream) {
  ferry::detail::check_rows("cuda::layer_norm", rows, n);
  check_pointers("cuda::layer_norm", x, y, rows, n);
  if (rows == 0 || n == 0) return;
  launch_norm<true>(x, nullptr, y, rows, n, eps, stream);
}

}  // namespace ferry::cuda
