// This machine as a planner sees it: whether a GPU is there, its name, the device memory its CUDA context takes
// (measured the first time it is asked, before anything else creates the context), and — once `ferry calibrate` has
// run — the measured rates of the cost model, kept in the cache directory. A command that plans for another machine
// reads that machine's profile from a file instead (DeviceProfile::from_json).
#pragma once

#include <filesystem>
#include <string>

#include "ferry/policies/device_profile.hpp"

namespace ferry {

// The profile without rates (nothing is measured but the context), plus the cached rates when the cache holds a
// calibration of this very machine: same GPU, driver, CPU and thread count. A cache that is corrupt or belongs to
// another machine (a changed driver, a container with fewer threads) is not used.
DeviceProfile this_device_profile();

// $FERRY_CACHE_DIR/device-profile.json (see ferry_cache_dir).
std::filesystem::path device_profile_cache_path();

// What the cache says about this machine: `usable` when it holds a calibration of it; otherwise `problem` says why
// not ("no calibration yet", "corrupt: ...", "made for another machine: ...").
struct CachedCalibration {
  bool usable = false;
  DeviceProfile profile;
  std::string problem;
};
CachedCalibration read_cached_calibration();

// Measures this machine (CPU always, GPU when there is one: a few seconds) and writes the profile to the cache
// atomically.
DeviceProfile calibrate_this_device();

}  // namespace ferry
