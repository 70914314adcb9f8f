// Token-embedding lookup from a quantized table on the GPU, with the argument list of ferry::ref::embedding_lookup plus
// a stream. The design note is at the top of kernels/cuda/embedding.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda {

// The table types the lookup decodes: every type the scalar reference dequantizes (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0, Q2_K .. Q6_K, IQ4_NL, IQ4_XS).
bool embedding_supported(GgmlType type) noexcept;

// out[t, :] (float32 [n_tokens, table.n_cols], device) = row ids[t] of the table (device memory, GGML layout,
// n_rows = vocabulary), decoded bit-exactly as ferry::ref::dequantize does. ids: device int32 [n_tokens].
// An id outside [0, table.n_rows) is the caller's bug, but it never reads or writes out of bounds: that token's output
// row is filled with quiet NaN (nothing is read from the table), so the mistake shows downstream instead of silently
// embedding some other token. Throws UNSUPPORTED for a type embedding_supported() refuses, INVALID_ARGUMENT for a bad
// shape or a table pointer not aligned to its element (4 bytes for F32, 2 for the rest).
void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out,
                      cudaStream_t stream);

}  // namespace ferry::cuda
