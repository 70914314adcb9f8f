// Scalar reference transformer ops: plain loops accumulating in double. The oracle for kernels/cpu and kernels/cuda;
// never used on a hot path. Activations are float32, row-major; shapes as in ferry/kernels/matrix.hpp.
#pragma once

#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::ref {

// y[t, n] = sum_k W[n, k] * x[t, k]; x is [T, K], y is [T, N]. Weights dequantized with ref::dequantize.
void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y);
// y = x / rms(x) * weight (weight may be null), per row of n.
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps);
// y = (x - mean) / sqrt(var + eps), per row of n, no affine (Flux).
void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps);
// In place on x [T, n_head, head_dim]; token t at positions[t]; theta_i = pos * freq_base^(-2i/head_dim).
void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode);
// Flux's multi-axis RoPE: head_dim splits into n_axes parts of axes_dim[a] (sum = head_dim); token t has one
// position per axis, positions[t * n_axes + a]; each part rotates adjacent pairs with theta^(-2i/axes_dim[a]).
void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta);
void silu_mul(const float* gate, const float* up, float* y, int64_t n);  // y = silu(gate) * up
void gelu_tanh(const float* x, float* y, int64_t n);
void add(const float* a, const float* b, float* y, int64_t n);
// y[r, i] = x[r, i] * (1 + scale[i]) + shift[i]  (adaLN modulation, shift/scale broadcast over rows)
void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n);
// y[r, i] = x[r, i] + bias[i]  (the bias of a linear layer, broadcast over the rows; y may be x)
void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n);
// residual[r, i] += gate[i] * x[r, i]
void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n);
// Softmax attention; k and v are FP16 (the KV cache format), bit patterns as uint16_t.
void attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out);
// out[t, :] = dequantized row ids[t] of the table (n_rows = vocabulary, n_cols = width).
void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out);

}  // namespace ferry::ref
