#include "ferry/models/this_device.hpp"

#include "ferry/offload/gpu.hpp"

namespace ferry {

DeviceProfile this_device_profile() {
  DeviceProfile d;
  d.has_gpu = gpu_available();
  if (!d.has_gpu) return d;
  d.context_bytes = gpu_context_overhead_bytes();
  d.name = gpu_name();
  return d;
}

}  // namespace ferry
