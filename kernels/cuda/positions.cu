#include <climits>
#include <string>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/positions.cuh"

namespace ferry::cuda {
namespace {

__global__ void iota_kernel(int32_t* dst, int64_t n, int64_t start, DevicePosition position) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = static_cast<int32_t>(start + position.shift() + i);
}

__global__ void set_position_kernel(int32_t* dst, int32_t value) { *dst = value; }

}  // namespace

void iota_positions(int32_t* dst, int64_t n, int64_t start, cudaStream_t stream, DevicePosition position) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  iota_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(dst, n, start, position);
  FERRY_CUDA_CHECK_LAUNCH();
}

void set_position(int32_t* dst, int64_t value, cudaStream_t stream) {
  if (value < 0 || value > INT32_MAX)
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::set_position: position " + std::to_string(value) + " out of range");
  // A kernel, not a copy: no host buffer has to outlive the enqueue.
  set_position_kernel<<<1, 1, 0, stream>>>(dst, static_cast<int32_t>(value));
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
