// Token positions for RoPE, written on the device so a step never copies them from the host (a pageable copy would
// make the compute stream wait for the host).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {

// dst[i] = start + i for i < n.
void iota_positions(int32_t* dst, int64_t n, int64_t start, cudaStream_t stream);

}  // namespace ferry::cuda
