// What every family's runner needs around the scheduler: this machine as the planner sees it (this_device.hpp), and
// the layer pointers the scheduler borrows.
#pragma once

#include "ferry/models/this_device.hpp"

#include <memory>
#include <vector>

#include "ferry/offload/layer.hpp"
#include "ferry/policies/device_profile.hpp"

namespace ferry {

std::vector<const Layer*> layer_pointers(const std::vector<std::unique_ptr<Layer>>& layers);

}  // namespace ferry
