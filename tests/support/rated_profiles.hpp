// A device profile with round measured rates, shared by the cost-model and override tests so their expected times
// are exact: the GPU reads 1e12 B/s and does 1e14 flop/s, the link moves 1e10 B/s (5e9 at 1 MiB copies), the CPU
// reads 1e11 B/s and does 1e12 flop/s on 16 threads; Q8_0 is the one rated type.
#pragma once

#include "ferry/policies/device_profile.hpp"

namespace ferry::test {

inline DeviceProfile rated_gpu() {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  DeviceProfile d{"a rated GPU", true, 500 * kMiB};
  d.link = {{1 * kMiB, 5e9}, {16 * kMiB, 1e10}};
  d.gpu_gemv_bytes_per_s = {{"Q8_0", 1e12}};
  d.gpu_gemm_flops = 1e14;
  d.cpu_gemv_bytes_per_s = {{"Q8_0", 1e11}};
  d.cpu_gemm_flops = 1e12;
  d.cpu_threads = 16;
  return d;
}

}  // namespace ferry::test
