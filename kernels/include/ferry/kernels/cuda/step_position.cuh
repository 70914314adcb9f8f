// A step's position read on the device: what makes a captured decode step (a CUDA graph) replayable at the next
// position. The host enqueues the step once, with the position of that step (`captured`); every replay first writes
// its own position to `value`, and the kernels that depend on the position (token positions, the KV-cache store, decode
// attention) add *value - captured to the positions the host gave them. Without `value` they use the host's as given.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {

struct DevicePosition {
  const int32_t* value = nullptr;  // device memory: the position of the step being run
  int64_t captured = 0;            // the position the host passed when the work was enqueued
  // The largest position a replay may write to `value`: decode attention sizes its grid for it.
  int64_t max = 0;

  bool active() const noexcept { return value != nullptr; }
  // How far the host's positions are off in this replay: 0 without `value`.
  __device__ int64_t shift() const { return value == nullptr ? 0 : static_cast<int64_t>(*value) - captured; }
};

}  // namespace ferry::cuda
