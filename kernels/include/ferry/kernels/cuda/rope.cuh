// Rotary position embeddings on the GPU, with the argument lists of ferry::ref::rope / rope_multi_axis plus a stream.
// x is a device pointer to float32 [n_tokens, n_head, head_dim], rotated in place. The design note is at the top of
// kernels/cuda/rope.cu.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/kernels/cuda/step_position.cuh"
#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda {

// The largest head_dim the kernels take: the per-pair frequency table travels as a kernel argument.
inline constexpr int64_t kRopeMaxHeadDim = 512;

// positions: device int32 [n_tokens]; token t rotates pair i by positions[t] * freq_base^(-2i/head_dim).
void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode, cudaStream_t stream);
// Flux: positions is a device float32 [n_tokens, n_axes]; axes_dim is a HOST array of n_axes even sizes summing to
// head_dim (model metadata, not per-token data). Each part rotates adjacent pairs with theta^(-2i/axes_dim[a]).
void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta, cudaStream_t stream);

// One sequence's RoPE and KV-cache store in one kernel (Ops::rope_store_kv): token t at position pos0 + t rotates
// q [n_tokens, n_head, head_dim] in place and k [n_tokens, n_head_kv, head_dim] (k's buffer is left as it was), then
// rows pos0 .. of the caches ([capacity, n_head_kv · head_dim]) become the rotated k and v rounded to FP16 — the
// values of positions + rope + rope + store_kv. With `position` active (a replayed step) the positions move by its
// shift; a replay whose rows would pass the cache stores nothing, as store_kv.
void rope_store_kv(float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                   int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, __half* k_cache, __half* v_cache,
                   int64_t capacity, cudaStream_t stream, DevicePosition position = {});

}  // namespace ferry::cuda
