// The CPU-only build has no GPU to measure.
#include "ferry/error.hpp"
#include "ferry/offload/calibrate.hpp"

namespace ferry {

GpuRates measure_gpu_rates() {
  fail(ErrorCategory::UNSUPPORTED, "calibrate: this build of ferry has no CUDA backend: no GPU to measure");
}

}  // namespace ferry
