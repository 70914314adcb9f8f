// This machine as a planner sees it: whether a GPU is there, its name, and the device memory its CUDA context takes
// (measured the first time it is asked, before anything else creates the context). A command that plans for another
// machine reads that machine's profile from a file instead (DeviceProfile::from_json).
#pragma once

#include "ferry/policies/device_profile.hpp"

namespace ferry {

DeviceProfile this_device_profile();

}  // namespace ferry
