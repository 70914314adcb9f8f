// The op vocabulary a model block is written over, bound to a backend: CpuOps (host pointers, Eigen + oneTBB on the
// caller's task arena) and CudaOps (device pointers, one stream, cuBLAS, the scheduler's scratch). A block written once
// against Ops runs on the CPU and on the GPU from the same source; the scheduler hands each layer the Ops of the device
// the layer runs on. Every op has the contract of its reference in ferry/kernels/ref/ops.hpp (shapes, layouts,
// numerics); the backends differ only in where the pointers point and in rounding.
//
// KV caches hold FP16 values as uint16_t bit patterns on both backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ferry/kernels/matrix.hpp"

namespace ferry {

enum class Device : uint8_t { CPU, GPU };

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Device device() const noexcept = 0;

  // y [T, rows] = x [T, cols] · wᵀ (w in GGML layout, any supported type).
  virtual void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) = 0;
  // Several matrices reading the same x (q, k, v; gate, up): one launch where the backend can fuse them.
  virtual void matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens,
                            std::span<float* const> ys);
  virtual void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) = 0;
  virtual void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) = 0;
  // dst[i] = start + i, i < n: the token positions of a step.
  virtual void positions(int32_t* dst, int64_t n, int64_t start) = 0;
  virtual void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions,
                    float freq_base, RopeMode mode) = 0;
  // Rows pos0 .. pos0 + n_tokens - 1 of the caches ([capacity, row_width] FP16) become k and v, rounded to nearest.
  virtual void store_kv(const float* k, const float* v, uint16_t* k_cache, uint16_t* v_cache, int64_t n_tokens,
                        int64_t pos0, int64_t row_width, int64_t capacity) = 0;
  // `scratch`: device bytes for the GPU's attention paths (device_sizing::attention_scratch_bytes); the CPU needs none.
  virtual void attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out,
                         std::span<std::byte> scratch) = 0;
  virtual void silu_mul(const float* gate, const float* up, float* y, int64_t n) = 0;
  virtual void gelu_tanh(const float* x, float* y, int64_t n) = 0;
  virtual void add(const float* a, const float* b, float* y, int64_t n) = 0;
  // y [rows, n] = x + bias (bias [n]: a linear layer's bias; y may be x).
  virtual void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) = 0;
  // Flux's ops. y [rows, n] = x * (1 + scale) + shift (adaLN; shift and scale [n]; y may be x).
  virtual void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) = 0;
  // residual [rows, n] += gate * x (gate [n]).
  virtual void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) = 0;
  // Multi-axis RoPE in place on x [n_tokens, n_head, head_dim]: positions [n_tokens, axes_dim.size()] on the device of
  // the ops; axes_dim (host memory, model metadata) sums to head_dim.
  virtual void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                               std::span<const int32_t> axes_dim, float theta) = 0;
  // dst[r, 0:n] = src[r, 0:n] for r < rows, rows `src_stride` and `dst_stride` floats apart: the column slices a
  // layer splits or joins (Flux's img_in input columns, the [attention | MLP] input of linear2). Must not overlap.
  virtual void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                         int64_t n) = 0;

  // Fused forms of sequences a block runs every step. A backend that can do one in fewer kernels and fewer passes
  // through memory overrides it (the GPU's decode GEMV: the norm, the SwiGLU product or the residual add done inside
  // the matrix product); the defaults here run the sequence spelled out in each comment, so every backend supports
  // them. Results equal the sequence's up to rounding. Scratch arguments are where the sequence keeps its
  // intermediate; a fused override need not write them, and they hold nothing afterwards.

  // ys[i] = rms_norm(x, norm_weight) · ws[i]ᵀ. xn [T, K]: scratch for the normalised x.
  virtual void rms_norm_matmul_batch(const float* x, const float* norm_weight, float eps,
                                     std::span<const QuantMatrixView> ws, int64_t n_tokens, std::span<float* const> ys,
                                     float* xn);
  // y += x · wᵀ (y [T, rows]: a residual stream). tmp [T, rows]: scratch for the product.
  virtual void matmul_add(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, float* tmp);
  // y += (silu(gate) ⊙ up) · wᵀ. gate [T, K] is scratch too (the sequence writes the product there); tmp as
  // matmul_add.
  virtual void swiglu_matmul_add(const QuantMatrixView& w, float* gate, const float* up, int64_t n_tokens, float* y,
                                 float* tmp);
  // One sequence's RoPE and KV-cache store: token t is at position pos0 + t; q [T, n_head, head_dim] and
  // k [T, n_head_kv, head_dim] are rotated (q in place: attention reads it next; k's buffer is scratch afterwards),
  // then rows pos0 .. pos0 + T - 1 of the caches ([capacity, n_head_kv · head_dim] FP16) become the rotated k and v.
  // position_scratch [T]: scratch for the token positions.
  virtual void rope_store_kv(float* q, float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                             int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, uint16_t* k_cache,
                             uint16_t* v_cache, int64_t capacity, int32_t* position_scratch);
};

}  // namespace ferry
