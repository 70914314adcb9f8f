// The CUDA build's backend for the CUDA-free parts of offload/ (see ../backend.hpp).
#include <cuda_runtime.h>

#include "../backend.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/gpu.hpp"

namespace ferry::detail {

bool probe_gpu(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    *reason = std::string("no usable CUDA device (cudaGetDeviceCount failed: ") + cudaGetErrorName(status) + ", " +
              cudaGetErrorString(status) + ")";
    cudaGetLastError();  // clear the (non-sticky) error so later calls do not report it again
    return false;
  }
  if (count == 0) {
    *reason = "no CUDA device (cudaGetDeviceCount found none)";
    return false;
  }
  return true;
}

void* pinned_alloc(size_t bytes, std::string* error) {
  void* data = nullptr;
  const cudaError_t status = cudaHostAlloc(&data, bytes, cudaHostAllocDefault);
  if (status != cudaSuccess) {
    *error = std::string("cudaHostAlloc: ") + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")";
    cudaGetLastError();
    return nullptr;
  }
  return data;
}

void pinned_free(void* data) noexcept {
  if (data != nullptr) cudaFreeHost(data);
}

uint64_t context_overhead_bytes() { return gpu_available() ? device_memory_baseline().context_bytes : 0; }

std::string device_name() {
  int device = 0;
  cudaDeviceProp props{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&props, device) != cudaSuccess) {
    cudaGetLastError();
    return "unknown CUDA device";
  }
  return props.name;
}

std::string driver_text() { return driver_version(); }

}  // namespace ferry::detail
