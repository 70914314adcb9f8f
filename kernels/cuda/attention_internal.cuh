// Pieces of the attention family shared between attention.cu (dispatch, sizing) and attention_decode.cu. Not a public
// header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda::detail {

// The decode kernel handles this shape (even head_dim up to kAttentionDecodeMaxHeadDim).
bool decode_supported(const AttentionShape& s) noexcept;
// Bytes of partial results for n_splits KV splits of every (query, head).
size_t decode_scratch_bytes(const AttentionShape& s, int64_t n_splits);

}  // namespace ferry::cuda::detail
