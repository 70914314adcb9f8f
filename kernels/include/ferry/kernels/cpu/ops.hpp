// CPU kernels (Eigen + oneTBB): the same op set and signatures as ferry/kernels/ref/ops.hpp, fast. Parallel over
// rows/heads on the current oneTBB arena (the scheduler bounds its threads). Matmul: fused dequantize + dot for small
// T (reads each weight byte once), Eigen GEMM on dequantized tiles for large T.
#pragma once

#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::cpu {

// Tokens one fused dequantize + dot kernel call takes (its register blocking).
inline constexpr int64_t kCpuGemvMaxTokens = 8;
// Token counts up to this use the fused path (int8 activations), in groups of kCpuGemvMaxTokens over rows held in
// cache; above it, tiles are dequantized for Eigen's GEMM (float activations).
inline constexpr int64_t kCpuInt8MaxTokens = 64;

void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y);
void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps);
void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps);
void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode);
void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta);
void silu_mul(const float* gate, const float* up, float* y, int64_t n);
void gelu_tanh(const float* x, float* y, int64_t n);
void add(const float* a, const float* b, float* y, int64_t n);
void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n);
void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n);
void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n);
void attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out);
void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out);
// Dequantizes n elements to float32 (vectorised where it matters; same values as ref::dequantize).
void dequantize(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace ferry::cpu
