// Row normalisations on the GPU, with the argument lists of ferry::ref::rms_norm / layer_norm plus a stream.
// All pointers are device pointers to float32 rows of n elements; x and y may be the same buffer (in place).
// The design note is at the top of kernels/cuda/norm.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {

// y = x / sqrt(mean(x^2) + eps) * weight per row; weight (n floats) may be null for no scale.
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps, cudaStream_t stream);
// y = (x - mean) / sqrt(var + eps) per row (population variance), no affine: Flux's pre-modulation norm.
void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps, cudaStream_t stream);

}  // namespace ferry::cuda
