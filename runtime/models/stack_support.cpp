#include "ferry/models/stack_support.hpp"

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

std::vector<const Layer*> layer_pointers(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<const Layer*> out;
  out.reserve(layers.size());
  for (const auto& l : layers) out.push_back(l.get());
  return out;
}

}  // namespace ferry
