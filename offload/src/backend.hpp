// The few calls the CUDA-free parts of offload/ need from the CUDA runtime, implemented by cuda/backend_cuda.cpp in a
// CUDA build and by backend_none.cpp otherwise. Not a public header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry::detail {

// cudaGetDeviceCount > 0; otherwise false with the reason.
bool probe_gpu(std::string* reason);
// cudaHostAlloc; nullptr with the CUDA error's text on failure.
void* pinned_alloc(size_t bytes, std::string* error);
void pinned_free(void* data) noexcept;
// The CUDA context overhead charged to every budget (device_memory_baseline: measured once per process); 0 without a
// GPU or a CUDA backend.
uint64_t context_overhead_bytes();
// cudaGetDeviceProperties' name of the current device.
std::string device_name();
// The GPU driver's version ("" without a CUDA backend).
std::string driver_text();

}  // namespace ferry::detail
