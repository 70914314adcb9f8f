// Token positions for RoPE, written on the device so a step never copies them from the host (a pageable copy would
// make the compute stream wait for the host).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/kernels/cuda/step_position.cuh"

namespace ferry::cuda {

// dst[i] = start + i for i < n (start shifted by `position` in a replayed step).
void iota_positions(int32_t* dst, int64_t n, int64_t start, cudaStream_t stream, DevicePosition position = {});
// *dst = value: a replayed step's position, written on the stream before the replay.
void set_position(int32_t* dst, int64_t value, cudaStream_t stream);

}  // namespace ferry::cuda
