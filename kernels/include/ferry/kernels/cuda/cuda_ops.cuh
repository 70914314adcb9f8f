// Ops on the GPU: the ferry::cuda kernels over device pointers, enqueued on one stream (never synchronising), GEMMs
// through cuBLAS with the caller's FP16 scratch and workspace.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/cuda/step_position.cuh"
#include "ferry/kernels/ops.hpp"

namespace ferry {

class CudaOps final : public Ops {
 public:
  CudaOps(cudaStream_t stream, cublasHandle_t cublas, const cuda::GemmScratch& scratch)
      : m_stream(stream), m_cublas(cublas), m_scratch(scratch) {}

  Device device() const noexcept override { return Device::GPU; }
  cudaStream_t stream() const noexcept { return m_stream; }
  // While set (a step being captured for replay as a CUDA graph): positions(), store_kv() and attention() read the
  // step's position from position.value when the work runs, relative to the position they are called with.
  void set_device_position(const cuda::DevicePosition& position) noexcept { m_position = position; }
  // With fused ops on, the composite ops below run as one kernel where the GPU has one (the int8-activation GEMV for
  // steps of up to 8 tokens: the norm, the SwiGLU product and the residual add inside it; RoPE with the KV store) and
  // as Ops' sequence otherwise. Off: always the sequence.
  void set_fused_ops(bool on) noexcept { m_fused = on; }
  bool fused_ops() const noexcept { return m_fused; }
  void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) override;
  void matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens,
                    std::span<float* const> ys) override;
  void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) override;
  void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) override;
  void positions(int32_t* dst, int64_t n, int64_t start) override;
  void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
            RopeMode mode) override;
  void store_kv(const float* k, const float* v, uint16_t* k_cache, uint16_t* v_cache, int64_t n_tokens, int64_t pos0,
                int64_t row_width, int64_t capacity) override;
  void attention(const AttentionShape& shape, const float* q, const uint16_t* k, const uint16_t* v, float* out,
                 std::span<std::byte> scratch) override;
  void silu_mul(const float* gate, const float* up, float* y, int64_t n) override;
  void gelu_tanh(const float* x, float* y, int64_t n) override;
  void add(const float* a, const float* b, float* y, int64_t n) override;
  void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) override;
  void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) override;
  void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) override;
  void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                       std::span<const int32_t> axes_dim, float theta) override;
  void copy_rows(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                 int64_t n) override;
  void rms_norm_matmul_batch(const float* x, const float* norm_weight, float eps, std::span<const QuantMatrixView> ws,
                             int64_t n_tokens, std::span<float* const> ys, float* xn) override;
  void matmul_add(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, float* tmp) override;
  void swiglu_matmul_add(const QuantMatrixView& w, float* gate, const float* up, int64_t n_tokens, float* y,
                         float* tmp) override;
  void rope_store_kv(float* q, float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                     int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, uint16_t* k_cache,
                     uint16_t* v_cache, int64_t capacity, int32_t* position_scratch) override;

 private:
  cudaStream_t m_stream;
  cublasHandle_t m_cublas;
  cuda::GemmScratch m_scratch;
  cuda::DevicePosition m_position;
  bool m_fused = false;
};

}  // namespace ferry
