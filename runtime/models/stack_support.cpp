#include "ferry/models/stack_support.hpp"

#include "ferry/offload/gpu.hpp"

namespace ferry {

std::vector<const Layer*> layer_pointers(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<const Layer*> out;
  out.reserve(layers.size());
  for (const auto& l : layers) out.push_back(l.get());
  return out;
}

}  // namespace ferry
