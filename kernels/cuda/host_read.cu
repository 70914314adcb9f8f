#include <cstdint>

#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/host_read.cuh"

namespace ferry::cuda {
namespace {

constexpr int kThreads = 256;
// Enough blocks to keep many bus reads in flight; the moves this serves are kilobytes to a few megabytes.
constexpr unsigned kMaxBlocks = 256;

__global__ void read_host_vec16_kernel(uint4* __restrict__ dst, const uint4* __restrict__ src, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

__global__ void read_host_bytes_kernel(unsigned char* __restrict__ dst, const unsigned char* __restrict__ src,
                                       size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}

unsigned blocks_for(size_t n) {
  const size_t wanted = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(wanted < kMaxBlocks ? wanted : kMaxBlocks);
}

}  // namespace

const void* device_view_of_host(const void* host) noexcept {
  if (host == nullptr) return nullptr;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, host) != cudaSuccess) {
    cudaGetLastError();  // pageable memory on an old runtime: not an error of the caller's
    return nullptr;
  }
  if (attributes.type != cudaMemoryTypeHost || attributes.devicePointer == nullptr) return nullptr;
  return attributes.devicePointer;
}

void read_host_to_device(void* dst, const void* host_view, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  const auto d = reinterpret_cast<uintptr_t>(dst), s = reinterpret_cast<uintptr_t>(host_view);
  size_t head = 0;
  if (d % 16 == s % 16) {
    // Both reach a 16-byte boundary after the same number of bytes: bytes up to it, 16-byte words, bytes after.
    head = (16 - d % 16) % 16;
    if (head > bytes) head = bytes;
    const size_t words = (bytes - head) / 16;
    if (words > 0) {
      read_host_vec16_kernel<<<blocks_for(words), kThreads, 0, stream>>>(
          reinterpret_cast<uint4*>(d + head), reinterpret_cast<const uint4*>(s + head), words);
      FERRY_CUDA_CHECK_LAUNCH();
    }
    const size_t done = head + words * 16;
    if (done < bytes) {
      read_host_bytes_kernel<<<1, kThreads, 0, stream>>>(
          reinterpret_cast<unsigned char*>(d + done), reinterpret_cast<const unsigned char*>(s + done), bytes - done);
      FERRY_CUDA_CHECK_LAUNCH();
    }
    if (head == 0) return;
    bytes = head;  // the leading bytes, below
  }
  read_host_bytes_kernel<<<blocks_for(bytes), kThreads, 0, stream>>>(
      reinterpret_cast<unsigned char*>(dst), reinterpret_cast<const unsigned char*>(host_view), bytes);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
