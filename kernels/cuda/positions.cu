#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/positions.cuh"

namespace ferry::cuda {
namespace {

__global__ void iota_kernel(int32_t* dst, int64_t n, int64_t start) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = static_cast<int32_t>(start + i);
}

}  // namespace

void iota_positions(int32_t* dst, int64_t n, int64_t start, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int kThreads = 256;
  iota_kernel<<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(dst, n, start);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
