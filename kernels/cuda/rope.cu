// Rotary position embeddings (llama's single-axis RoPE in both pair layouts, Flux's multi-axis RoPE) on the GPU.
//
// Roofline: 8 bytes moved per element (read and write in place), a few flops: memory-bound.
// Technique: one block per token. The head_dim/2 angles of a token are shared by all its heads, so the block computes
// each (cos, sin) once into shared memory and then rotates every head's pairs from there.
// Precision: the inverse frequencies are computed on the host in double and passed as a kernel argument; the angle
// pos * inv_freq is formed and reduced modulo 2*pi in double (positions reach 10^5 in long contexts, where a float
// angle would be off by ~10^-2 rad), and only the reduced angle goes through sincosf. The doubles cost a handful of
// FP64 operations per (token, pair), negligible even on consumer cards with 1/64-rate FP64.
// rope_store_kv (CudaOps' fused op): the same rotation of one sequence's q and k in one kernel, the rotated k going
// straight to the FP16 KV cache with v, instead of positions + rope + rope + store_kv.
#include "ferry/kernels/cuda/rope.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "../cpu/op_checks.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"

namespace ferry::cuda {
namespace {

constexpr int kMaxPairs = static_cast<int>(kRopeMaxHeadDim / 2);
constexpr int kThreads = 256;
constexpr int64_t kMaxGridTokens = 1 << 20;

// Per pair i of a head: its inverse frequency and, for multi-axis RoPE, which position column drives it. Passed by
// value (2.3 KB, under the 4 KB kernel-argument limit).
struct RopeTable {
  double inv_freq[kMaxPairs];
  uint8_t axis[kMaxPairs];
};

// (cos, sin) of pos · inv_freq, the angle reduced modulo 2π in double (see the note at the top).
__device__ __forceinline__ float2 rope_cos_sin(double pos, double inv_freq) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  double angle = pos * inv_freq;
  angle -= kTwoPi * rint(angle / kTwoPi);
  float s, c;
  sincosf(static_cast<float>(angle), &s, &c);
  return make_float2(c, s);
}

// The pair (a, b) rotated by cs: the one expression of every kernel here, so that they round alike.
__device__ __forceinline__ float2 rotate_pair(float a, float b, float2 cs) {
  return make_float2(a * cs.x - b * cs.y, a * cs.y + b * cs.x);
}

// Rotates in place the n_head heads of one token's row xt, pair p by cos_sin[p] (block-stride over the pairs).
__device__ __forceinline__ void rotate_heads(float* xt, int n_head, int head_dim, int pair_stride, int pair_step,
                                             const float2* cos_sin) {
  const int n_pairs = head_dim / 2;
  for (int idx = threadIdx.x; idx < n_head * n_pairs; idx += blockDim.x) {
    const int h = idx / n_pairs, p = idx % n_pairs;
    float* v = xt + static_cast<int64_t>(h) * head_dim + p * pair_step;
    const float2 r = rotate_pair(v[0], v[pair_stride], cos_sin[p]);
    v[0] = r.x;
    v[pair_stride] = r.y;
  }
}

// kMulti: positions are float [T, n_axes] (Flux); otherwise int32 [T]. pair_stride: distance between the two elements
// of a pair (1 for ADJACENT, head_dim / 2 for HALF_SPLIT); pair_step: distance between consecutive pairs' first
// elements (2 for ADJACENT, 1 for HALF_SPLIT).
template <bool kMulti>
__global__ void rope_kernel(float* x, int64_t n_tokens, int n_head, int head_dim, const int32_t* pos_i,
                            const float* pos_f, int n_axes, int pair_stride, int pair_step, const RopeTable table) {
  __shared__ float2 cos_sin[kMaxPairs];
  const int n_pairs = head_dim / 2;
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) {
      const double pos =
          kMulti ? static_cast<double>(pos_f[t * n_axes + table.axis[p]]) : static_cast<double>(pos_i[t]);
      cos_sin[p] = rope_cos_sin(pos, table.inv_freq[p]);
    }
    __syncthreads();
    rotate_heads(x + t * static_cast<int64_t>(n_head) * head_dim, n_head, head_dim, pair_stride, pair_step, cos_sin);
    __syncthreads();  // cos_sin is rewritten for the next token
  }
}

// rope_kernel's rotation of q and k for one sequence at positions first + t, first = pos0 + the replay's shift; k's
// rotated values and v go to the caches' rows first + t as FP16 instead of back to k. One block per token.
__global__ void rope_store_kv_kernel(float* q, const float* k, const float* v, int64_t n_tokens, int n_head,
                                     int n_head_kv, int head_dim, int64_t pos0, int pair_stride, int pair_step,
                                     const RopeTable table, __half* k_cache, __half* v_cache, int64_t capacity,
                                     DevicePosition position) {
  __shared__ float2 cos_sin[kMaxPairs];
  const int n_pairs = head_dim / 2;
  const int64_t first = pos0 + position.shift();
  const bool store = first >= 0 && first <= capacity - n_tokens;
  const int64_t row = static_cast<int64_t>(n_head_kv) * head_dim;
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    // The position as the int32 token-position buffer would hold it (what rope_kernel reads).
    const auto pos = static_cast<double>(static_cast<int32_t>(first + t));
    for (int p = threadIdx.x; p < n_pairs; p += blockDim.x) cos_sin[p] = rope_cos_sin(pos, table.inv_freq[p]);
    __syncthreads();
    rotate_heads(q + t * static_cast<int64_t>(n_head) * head_dim, n_head, head_dim, pair_stride, pair_step, cos_sin);
    if (store) {
      const float* kt = k + t * row;
      __half* kc = k_cache + (first + t) * row;
      for (int idx = threadIdx.x; idx < n_head_kv * n_pairs; idx += blockDim.x) {
        const int h = idx / n_pairs, p = idx % n_pairs;
        const int64_t at = static_cast<int64_t>(h) * head_dim + p * pair_step;
        const float2 r = rotate_pair(kt[at], kt[at + pair_stride], cos_sin[p]);
        kc[at] = __float2half_rn(r.x);
        kc[at + pair_stride] = __float2half_rn(r.y);
      }
      const float* vt = v + t * row;
      __half* vc = v_cache + (first + t) * row;
      for (int64_t i = threadIdx.x; i < row; i += blockDim.x) vc[i] = __float2half_rn(vt[i]);
    }
    __syncthreads();  // cos_sin is rewritten for the next token
  }
}

void check_common(const char* op, const float* x, const void* positions, int64_t n_tokens, int64_t n_head,
                  int64_t head_dim) {
  if (head_dim > kRopeMaxHeadDim)
    fail(ErrorCategory::UNSUPPORTED, std::string(op) + ": head_dim " + std::to_string(head_dim) +
                                         " is above the supported maximum " + std::to_string(kRopeMaxHeadDim));
  if (n_head > (int64_t{1} << 20))
    fail(ErrorCategory::INVALID_ARGUMENT, std::string(op) + ": n_head " + std::to_string(n_head) + " is implausible");
  if (n_tokens > 0 && n_head > 0 && (x == nullptr || positions == nullptr))
    fail(ErrorCategory::INVALID_ARGUMENT,
         std::string(op) + ": x or positions is null for " + std::to_string(n_tokens) + " tokens");
}

unsigned token_grid(int64_t n_tokens) { return static_cast<unsigned>(std::min(n_tokens, kMaxGridTokens)); }

}  // namespace

void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode, cudaStream_t stream) {
  ferry::detail::check_rope("cuda::rope", n_tokens, n_head, head_dim);
  check_common("cuda::rope", x, positions, n_tokens, n_head, head_dim);
  if (n_tokens == 0 || n_head == 0) return;
  RopeTable table{};
  const int64_t n_pairs = head_dim / 2;
  for (int64_t i = 0; i < n_pairs; ++i)
    table.inv_freq[i] = std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / head_dim);
  const bool adjacent = mode == RopeMode::ADJACENT;
  rope_kernel<false><<<token_grid(n_tokens), kThreads, 0, stream>>>(
      x, n_tokens, static_cast<int>(n_head), static_cast<int>(head_dim), positions, nullptr, 1,
      adjacent ? 1 : static_cast<int>(n_pairs), adjacent ? 2 : 1, table);
  FERRY_CUDA_CHECK_LAUNCH();
}

void rope_store_kv(float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                   int64_t head_dim, int64_t pos0, float freq_base, RopeMode mode, __half* k_cache, __half* v_cache,
                   int64_t capacity, cudaStream_t stream, DevicePosition position) {
  ferry::detail::check_rope("cuda::rope_store_kv", n_tokens, n_head, head_dim);
  ferry::detail::check_rope("cuda::rope_store_kv", n_tokens, n_head_kv, head_dim);
  if (head_dim > kRopeMaxHeadDim)
    fail(ErrorCategory::UNSUPPORTED, "cuda::rope_store_kv: head_dim " + std::to_string(head_dim) +
                                         " is above the supported maximum " + std::to_string(kRopeMaxHeadDim));
  if (n_head > (int64_t{1} << 20) || n_head_kv > (int64_t{1} << 20))
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::rope_store_kv: " + std::to_string(n_head) + " query heads, " +
                                              std::to_string(n_head_kv) + " KV heads is implausible");
  if (pos0 < 0 || capacity < 0 || pos0 > capacity - n_tokens)  // pos0 + n_tokens > capacity, without overflow
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::rope_store_kv: rows " + std::to_string(pos0) + " .. +" +
                                              std::to_string(n_tokens) + " exceed the cache's " +
                                              std::to_string(capacity) + " rows");
  if (pos0 + n_tokens > int64_t{INT32_MAX})
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cuda::rope_store_kv: position " + std::to_string(pos0 + n_tokens) + " does not fit int32");
  if (n_tokens == 0 || (n_head == 0 && n_head_kv == 0)) return;
  if (q == nullptr || k == nullptr || v == nullptr || k_cache == nullptr || v_cache == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cuda::rope_store_kv: a pointer is null for " + std::to_string(n_tokens) + " tokens");
  RopeTable table{};
  const int64_t n_pairs = head_dim / 2;
  for (int64_t i = 0; i < n_pairs; ++i)
    table.inv_freq[i] = std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / head_dim);
  const bool adjacent = mode == RopeMode::ADJACENT;
  rope_store_kv_kernel<<<token_grid(n_tokens), kThreads, 0, stream>>>(
      q, k, v, n_tokens, static_cast<int>(n_head), static_cast<int>(n_head_kv), static_cast<int>(head_dim), pos0,
      adjacent ? 1 : static_cast<int>(n_pairs), adjacent ? 2 : 1, table, k_cache, v_cache, capacity, position);
  FERRY_CUDA_CHECK_LAUNCH();
}

void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta, cudaStream_t stream) {
  ferry::detail::check_rope_multi_axis("cuda::rope_multi_axis", n_tokens, n_head, head_dim, axes_dim, n_axes);
  check_common("cuda::rope_multi_axis", x, positions, n_tokens, n_head, head_dim);
  if (n_axes > 255)
    fail(ErrorCategory::UNSUPPORTED, "cuda::rope_multi_axis: " + std::to_string(n_axes) + " axes (at most 255)");
  if (n_tokens == 0 || n_head == 0) return;
  RopeTable table{};
  int p = 0;
  for (int32_t a = 0; a < n_axes; ++a) {
    for (int32_t i = 0; i < axes_dim[a] / 2; ++i, ++p) {
      table.inv_freq[p] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / axes_dim[a]);
      table.axis[p] = static_cast<uint8_t>(a);
    }
  }
  rope_kernel<true><<<token_grid(n_tokens), kThreads, 0, stream>>>(
      x, n_tokens, static_cast<int>(n_head), static_cast<int>(head_dim), nullptr, positions, n_axes, 1, 2, table);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
