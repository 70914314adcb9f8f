// What every family's runner needs around the scheduler: this machine as the planner sees it, and the layer pointers
// the scheduler borrows.
#pragma once

#include <memory>
#include <vector>

#include "ferry/offload/layer.hpp"
#include "ferry/policies/device_profile.hpp"

namespace ferry {

// This machine's device profile. The context overhead is measured first: it must see the device before anything else
// creates the context.
DeviceProfile this_device_profile();

std::vector<const Layer*> layer_pointers(const std::vector<std::unique_ptr<Layer>>& layers);

}  // namespace ferry
