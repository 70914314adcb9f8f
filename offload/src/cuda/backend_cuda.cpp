// The CUDA build's backend for the CUDA-free parts of offload/ (see ../backend.hpp).
#include <cuda_runtime.h>

#include "../backend.hpp"

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

}  // namespace ferry::detail
