// What a planner knows of the machine. Today: whether a GPU is there and the CUDA context's memory overhead (measured
// by offload's device_memory_baseline on the machine itself); `ferry calibrate` will add the measured rates (link,
// GPU and CPU kernels) that the cost model needs. Saved and loaded as JSON so a plan can be made for another machine.
#pragma once

#include <cstdint>
#include <string>

namespace ferry {

struct DeviceProfile {
  std::string name = "none";  // the GPU's name, "none" without one
  bool has_gpu = false;
  uint64_t context_bytes = 0;  // device memory the CUDA context, a cuBLAS handle and two streams take

  std::string to_json() const;
  // Throws FORMAT naming the field for malformed JSON or values of the wrong type.
  static DeviceProfile from_json(const std::string& text);
};

}  // namespace ferry
