// Whether this process can use a GPU: the CUDA backend is built in and cudaGetDeviceCount finds a device. Asked once
// (the answer is cached), so a CUDA build on a machine without a GPU falls back to CPU placements without retrying.
#pragma once

#include <cstdint>
#include <string>

namespace ferry {

bool cuda_backend_built() noexcept;
bool gpu_available() noexcept;
// Why gpu_available() is false, for messages ("built without the CUDA backend (FERRY_CUDA=OFF)",
// "cudaGetDeviceCount: no CUDA-capable device is detected"); empty when it is true.
std::string gpu_unavailable_reason();
// The device memory the CUDA context, a cuBLAS handle and two streams take, as every budget is charged for it
// (measured once per process on the first call, which creates the context); 0 without a GPU.
uint64_t gpu_context_overhead_bytes();
// The GPU's name ("NVIDIA H200"), "none" without one.
std::string gpu_name();
// The driver's version ("580.159.04"); "" without a usable GPU.
std::string gpu_driver();

}  // namespace ferry
