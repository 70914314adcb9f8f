// Element-wise transformer ops on the GPU, with the argument lists of the ferry::ref ops plus a stream. All pointers
// are device pointers to float32; an output may alias an input of the same shape (each element is read before it is
// written by the same thread). The design note is at the top of kernels/cuda/elementwise.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ferry::cuda {

void silu_mul(const float* gate, const float* up, float* y, int64_t n, cudaStream_t stream);  // silu(gate) * up
void gelu_tanh(const float* x, float* y, int64_t n, cudaStream_t stream);
void add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);
// y[r, i] = x[r, i] * (1 + scale[i]) + shift[i]; shift and scale are [n], broadcast over the rows.
void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n,
              cudaStream_t stream);
// y[r, i] = x[r, i] + bias[i]; bias is [n] (a linear layer's bias).
void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n, cudaStream_t stream);
// residual[r, i] += gate[i] * x[r, i]; gate is [n].
void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n, cudaStream_t stream);

}  // namespace ferry::cuda
