// Scalar reference quantization and dequantization for every GGML type ferry supports (see ferry/ggml_type.hpp).
// This is the test oracle for every CPU and GPU kernel: plain loops, no intrinsics, and arithmetic in the same order
// as the public reference implementation, so dequantized values match other readers bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ferry/ggml_type.hpp"

namespace ferry::ref {

// Dequantizes n consecutive elements (n a multiple of the type's block size) from `src` to float32.
// Throws UNSUPPORTED naming the type when it is not dequantizable, INVALID_ARGUMENT when n is not a multiple.
void dequantize(GgmlType type, const void* src, float* dst, int64_t n);

// Quantizes n consecutive floats (a multiple of the block size) into `dst` (row_bytes(type, n) bytes).
// Throws UNSUPPORTED naming the type when it is not quantizable.
void quantize(GgmlType type, const float* src, void* dst, int64_t n);

// Bytes of float32 output per byte of quantized input, for reporting rates.
double expansion_ratio(GgmlType type);

}  // namespace ferry::ref
