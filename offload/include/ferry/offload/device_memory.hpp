// What the device's memory looked like before ferry used it, measured once per process: the budget charges the CUDA
// context (and a cuBLAS handle and two streams) as "context overhead", measured as free memory before vs after
// creating them. "Before" needs a reading without a context, which only NVML gives (loaded with dlopen, so nothing
// links against the driver); without NVML the overhead is taken as total minus free after creation, which also
// charges other processes' memory: larger, so never unsafe. CUDA builds with a GPU only (else UNSUPPORTED).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace ferry {

struct DeviceMemoryBaseline {
  int device = 0;
  uint64_t total_bytes = 0;          // cudaMemGetInfo
  uint64_t free_before_context = 0;  // NVML; 0 when unknown
  uint64_t free_after_context = 0;   // same meter as free_before_context when NVML is used
  uint64_t context_bytes = 0;        // the overhead charged to every budget
  std::string method;                // how context_bytes was measured
};

// The first call measures (creating the context on the current device); later calls return the same numbers.
// Call it before anything else touches the device, or the context is already there and comes out as near zero.
const DeviceMemoryBaseline& device_memory_baseline();
// The device memory this process holds on its current device, by NVML's per-process accounting (what nvidia-smi
// lists per process): unaffected by other processes on the same card. nullopt where NVML cannot say.
std::optional<uint64_t> process_device_bytes();
// The NVIDIA driver's version by NVML ("570.124.06"), else the CUDA version the driver supports ("CUDA driver API
// 13.0"); empty when neither can be read.
std::string driver_version();
// cudaMemGetInfo's free bytes now (device-wide: other processes' allocations move it too).
uint64_t device_free_bytes();

}  // namespace ferry
