// Dequantization on the GPU, straight to 16-bit: quantized blocks in, FP16 (or BF16) out, no FP32 temporary.
// The design note (roofline, technique, invariants) is at the top of kernels/cuda/dequant.cu.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/ggml_type.hpp"

namespace ferry::cuda {

bool can_dequantize(GgmlType type) noexcept;
// n elements (a multiple of the block size) from src (device) to dst (device), on `stream`.
void dequantize_fp16(GgmlType type, const void* src, __half* dst, int64_t n, cudaStream_t stream);
void dequantize_bf16(GgmlType type, const void* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream);
// Benchmark only: the seed's slow path, dequantize to an FP32 temporary (`tmp`, n floats) then cast to FP16.
void dequantize_fp16_via_fp32(GgmlType type, const void* src, float* tmp, __half* dst, int64_t n,
                              cudaStream_t stream);

}  // namespace ferry::cuda
