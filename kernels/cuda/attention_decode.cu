// Decode attention: few queries against a long FP16 KV cache.
//
// Roofline: every K and V element is read once (4 bytes per cached (key, dim) pair); the work per byte is a handful of
// flops, so the ideal time is the cache's bytes at the device's copy bandwidth (llama-3-8B, 4096 cached tokens: 16.8 MB
// per layer, ~6 us on an H100). Tensor cores would not help: with one query per head there is no reuse to exploit.
// Technique (flash-decoding):
// - A block serves one query and a tile of up to kMaxGroup query heads that share a KV head, so each K/V row is read
//   once per GQA group, not once per head. Within a block each warp takes kKeysPerStep keys at a time; a lane holds
//   head_dim/64 half2 pairs of every row (coalesced 128-byte row segments) and the dot product is finished with
//   shuffles. Each warp keeps an online softmax (running max, sum, FP32 accumulators); the warps are merged through
//   shared memory at the end.
// - Long caches are split over the KV length so the grid fills the device (one query x 8 KV heads is only 8 blocks);
//   each split writes (max, sum, unnormalised accumulator) to the scratch and a small kernel merges the splits.
//   Without scratch the kernel runs unsplit and writes the output directly.
// - Scores are formed in the log2 domain (q pre-scaled by scale * log2 e) so the softmax uses exp2.
// Invariant: a split with no visible key writes max = -inf and sum 0, which the merge weights by 0 (never NaN).
#include <algorithm>
#include <cstdint>
#include <string>

#include "../cpu/op_checks.hpp"
#include "attention_internal.cuh"
#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/device_sizing.hpp"
#include "reduce.cuh"

namespace ferry::cuda {
namespace {

using detail::warp_max;
using detail::warp_sum;

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxGroup = 8;              // query heads per block: a whole KV group, or a tile of a larger one
constexpr int kKeysPerStep = 4;           // keys a warp loads before using any (memory-level parallelism)
constexpr int64_t kMinKeysPerSplit = 64;  // below this a split's fixed costs outweigh the extra parallelism
constexpr int kBlocksPerSm = 8;           // the split count aims at this many blocks per multiprocessor
constexpr int kMaxGridQueries = 65535;    // gridDim.z; the kernel loops over the rest
constexpr double kLog2e = 1.4426950408889634073599246810019;

struct DecodeArgs {
  const float* q;    // [n_q, n_head, head_dim]
  const __half2* k;  // [n_kv, n_kv_head, head_dim / 2] pairs
  const __half2* v;
  float* out;       // [n_q, n_head, head_dim]
  float2* part_ml;  // [n_q * n_head][n_splits] (max, sum); null when n_splits == 1
  float* part_acc;  // [n_q * n_head][n_splits][head_dim]
  int64_t n_q, n_kv, q_pos0, keys_per_split;
  int n_head, n_kv_head, head_dim, group, n_tiles, n_splits;
  float scale_log2;  // scale * log2(e)
  bool causal;
  DevicePosition position;  // a replayed step: n_kv and q_pos0 shifted by its position
};

// kPairs: half2 pairs per lane (head_dim <= 64 * kPairs); kGroup: query heads per block (the tile's real count ng may
// be smaller when the group is not a power of two).
template <int kPairs, int kGroup>
__global__ void __launch_bounds__(kThreads) decode_kernel(const DecodeArgs a) {
  __shared__ float2 sm_ml[kWarps][kGroup];
  __shared__ float sm_acc[kWarps][kGroup][kPairs * 64];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int split = blockIdx.x;
  const int kvh = blockIdx.y / a.n_tiles;
  const int g0 = (blockIdx.y % a.n_tiles) * kGroup;
  const int ng = min(kGroup, a.group - g0);
  const int half_dim = a.head_dim / 2;
  const int64_t key_stride = static_cast<int64_t>(a.n_kv_head) * half_dim;  // pairs between consecutive keys
  const __half2* kbase = a.k + static_cast<int64_t>(kvh) * half_dim;
  const __half2* vbase = a.v + static_cast<int64_t>(kvh) * half_dim;

  const int64_t shift = a.position.shift();
  const int64_t n_kv = a.n_kv + shift, q_pos0 = a.q_pos0 + shift;
  for (int64_t i = blockIdx.z; i < a.n_q; i += gridDim.z) {
    const int64_t visible = a.causal ? min(n_kv, q_pos0 + i + 1) : n_kv;
    const int64_t k_begin = static_cast<int64_t>(split) * a.keys_per_split;
    const int64_t k_end = min(k_begin + a.keys_per_split, visible);

    float2 qf[kGroup][kPairs];
    float2 acc[kGroup][kPairs];
    float m[kGroup], l[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      m[g] = -INFINITY;
      l[g] = 0.0f;
      const int64_t q_offset = (i * a.n_head + kvh * a.group + g0 + g) * a.head_dim;
#pragma unroll
      for (int t = 0; t < kPairs; ++t) {
        const int d2 = lane + 32 * t;
        float2 x = make_float2(0.0f, 0.0f);
        if (g < ng && d2 < half_dim) x = reinterpret_cast<const float2*>(a.q + q_offset)[d2];
        qf[g][t] = make_float2(x.x * a.scale_log2, x.y * a.scale_log2);
        acc[g][t] = make_float2(0.0f, 0.0f);
      }
    }

    for (int64_t j0 = k_begin + warp * kKeysPerStep; j0 < k_end; j0 += kWarps * kKeysPerStep) {
      __half2 kk[kKeysPerStep][kPairs], vv[kKeysPerStep][kPairs];
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
#pragma unroll
        for (int t = 0; t < kPairs; ++t) {
          const int d2 = lane + 32 * t;
          const bool ok = j0 + u < k_end && d2 < half_dim;
          kk[u][t] = ok ? kbase[(j0 + u) * key_stride + d2] : __float2half2_rn(0.0f);
          vv[u][t] = ok ? vbase[(j0 + u) * key_stride + d2] : __float2half2_rn(0.0f);
        }
      }
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        if (g >= ng) continue;  // uniform across the warp
        float s[kKeysPerStep];
        float mx = m[g];
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
          float dot = 0.0f;
#pragma unroll
          for (int t = 0; t < kPairs; ++t) {
            const float2 kf = __half22float2(kk[u][t]);
            dot += qf[g][t].x * kf.x + qf[g][t].y * kf.y;
          }
          s[u] = warp_sum(dot);
          if (j0 + u < k_end) mx = fmaxf(mx, s[u]);
        }
        const float corr = exp2f(m[g] - mx);  // 0 while m[g] is still -inf; mx is finite (key j0 is valid)
        l[g] *= corr;
#pragma unroll
        for (int t = 0; t < kPairs; ++t) acc[g][t] = make_float2(acc[g][t].x * corr, acc[g][t].y * corr);
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) {
          const float p = j0 + u < k_end ? exp2f(s[u] - mx) : 0.0f;
          l[g] += p;
#pragma unroll
          for (int t = 0; t < kPairs; ++t) {
            const float2 vf = __half22float2(vv[u][t]);
            acc[g][t].x += p * vf.x;
            acc[g][t].y += p * vf.y;
          }
        }
        m[g] = mx;
      }
    }

    // Merge the warps' online-softmax states.
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      if (lane == 0) sm_ml[warp][g] = make_float2(m[g], l[g]);
#pragma unroll
      for (int t = 0; t < kPairs; ++t) {
        const int d2 = lane + 32 * t;
        if (d2 < half_dim) {
          sm_acc[warp][g][2 * d2] = acc[g][t].x;
          sm_acc[warp][g][2 * d2 + 1] = acc[g][t].y;
        }
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < ng * a.head_dim; idx += kThreads) {
      const int g = idx / a.head_dim, d = idx % a.head_dim;
      float mx = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_ml[w][g].x);
      float sum = 0.0f, val = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float wt = sm_ml[w][g].x == -INFINITY ? 0.0f : exp2f(sm_ml[w][g].x - mx);
        sum += wt * sm_ml[w][g].y;
        val += wt * sm_acc[w][g][d];
      }
      const int64_t row = i * a.n_head + kvh * a.group + g0 + g;
      if (a.n_splits == 1) {
        a.out[row * a.head_dim + d] = val / sum;
      } else {
        const int64_t part = row * a.n_splits + split;
        a.part_acc[part * a.head_dim + d] = val;
        if (d == 0) a.part_ml[part] = make_float2(mx, sum);
      }
    }
    __syncthreads();  // the shared state is rewritten for the next query
  }
}

// Merges the splits of one (query, head) row: weights 2^(m_s - max), output sum_s w_s acc_s / sum_s w_s l_s.
__global__ void decode_merge_kernel(const float2* part_ml, const float* part_acc, float* out, int n_splits,
                                    int head_dim) {
  __shared__ float weight[kAttentionDecodeMaxSplits];
  __shared__ float inv_sum;
  const int64_t row = blockIdx.x;
  const float2* ml = part_ml + row * n_splits;
  if (threadIdx.x < 32) {
    float mx = -INFINITY;
    for (int s = threadIdx.x; s < n_splits; s += 32) mx = fmaxf(mx, ml[s].x);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int s = threadIdx.x; s < n_splits; s += 32) {
      const float w = ml[s].x == -INFINITY ? 0.0f : exp2f(ml[s].x - mx);
      weight[s] = w;
      sum += w * ml[s].y;
    }
    sum = warp_sum(sum);
    if (threadIdx.x == 0) inv_sum = 1.0f / sum;
  }
  __syncthreads();
  const float* acc = part_acc + row * n_splits * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < n_splits; ++s) v += weight[s] * acc[static_cast<int64_t>(s) * head_dim + d];
    out[row * head_dim + d] = v * inv_sum;
  }
}

template <int kPairs>
void launch_decode_pairs(const DecodeArgs& a, int group_tile, dim3 grid, cudaStream_t stream) {
  switch (group_tile) {
    case 1:
      decode_kernel<kPairs, 1><<<grid, kThreads, 0, stream>>>(a);
      break;
    case 2:
      decode_kernel<kPairs, 2><<<grid, kThreads, 0, stream>>>(a);
      break;
    case 4:
      decode_kernel<kPairs, 4><<<grid, kThreads, 0, stream>>>(a);
      break;
    default:
      decode_kernel<kPairs, 8><<<grid, kThreads, 0, stream>>>(a);
      break;
  }
  FERRY_CUDA_CHECK_LAUNCH();
}

int sm_count() {
  int device = 0, count = 0;
  FERRY_CUDA_CHECK(cudaGetDevice(&device));
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return std::max(count, 1);
}

using DecodeScratchLayout = device_sizing::AttentionDecodeLayout;
DecodeScratchLayout decode_layout(const AttentionShape& s, int64_t n_splits) {
  return device_sizing::attention_decode_layout(s, n_splits);
}

}  // namespace

namespace detail {

bool decode_supported(const AttentionShape& s) noexcept { return device_sizing::attention_decode_supported(s); }

size_t decode_scratch_bytes(const AttentionShape& s, int64_t n_splits) {
  const DecodeScratchLayout l = decode_layout(s, n_splits);
  if (l.overflow)
    fail(ErrorCategory::BUDGET, "cuda::attention: decode scratch for " + std::to_string(s.n_q) + " queries x " +
                                    std::to_string(n_splits) + " splits overflows 64 bits");
  return l.total;
}

}  // namespace detail

void attention_decode(const AttentionShape& s, const float* q, const __half* k, const __half* v, float* out,
                      const AttentionScratch& scratch, cudaStream_t stream, DevicePosition position) {
  ferry::detail::check_attention("cuda::attention_decode", s);
  if (s.n_q == 0) return;
  if (q == nullptr || k == nullptr || v == nullptr || out == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::attention_decode: q, k, v or out is null");
  if (!detail::decode_supported(s))
    fail(ErrorCategory::UNSUPPORTED, "cuda::attention_decode: head_dim " + std::to_string(s.head_dim) +
                                         " (the decode kernel needs an even head_dim up to " +
                                         std::to_string(kAttentionDecodeMaxHeadDim) + ")");
  if (reinterpret_cast<uintptr_t>(q) % 8 != 0 || reinterpret_cast<uintptr_t>(k) % 4 != 0 ||
      reinterpret_cast<uintptr_t>(v) % 4 != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::attention_decode: q must be 8-byte and k, v 4-byte aligned");
  if (s.n_head > INT32_MAX || s.head_dim * s.n_kv_head > INT32_MAX)
    fail(ErrorCategory::UNSUPPORTED, "cuda::attention_decode: " + std::to_string(s.n_head) + " heads is too many");

  const int64_t group = s.n_head / s.n_kv_head;
  int group_tile = kMaxGroup;
  for (int t : {1, 2, 4, 8})
    if (group <= t) {
      group_tile = t;
      break;
    }
  const int64_t n_tiles = (group + group_tile - 1) / group_tile;
  const int64_t grid_q = std::min<int64_t>(s.n_q, kMaxGridQueries);

  // Split the visible key range until the grid has ~kBlocksPerSm blocks per multiprocessor, within the scratch. The
  // range is rounded up to the granule (and, in a step captured for replay, reaches as far as its last replay may), so
  // every step of a bucket of positions splits alike, replayed or not.
  const int64_t reach = position.active() ? std::max<int64_t>(position.max - position.captured, 0) : 0;
  const int64_t visible_max =
      ((s.causal ? std::min(s.n_kv, s.q_pos0 + s.n_q) : s.n_kv) + reach + kAttentionDecodeSplitGranule - 1) /
      kAttentionDecodeSplitGranule * kAttentionDecodeSplitGranule;
  const int64_t base_blocks = grid_q * s.n_kv_head * n_tiles;
  int64_t n_splits = (static_cast<int64_t>(kBlocksPerSm) * sm_count() + base_blocks - 1) / base_blocks;
  n_splits = std::min({n_splits, (visible_max + kMinKeysPerSplit - 1) / kMinKeysPerSplit, kAttentionDecodeMaxSplits});
  while (n_splits > 1) {
    const DecodeScratchLayout l = decode_layout(s, n_splits);
    if (scratch.data != nullptr && !l.overflow && l.total <= scratch.bytes) break;
    --n_splits;
  }
  n_splits = std::max<int64_t>(n_splits, 1);
  const int64_t keys_per_split = (visible_max + n_splits - 1) / n_splits;
  n_splits = (visible_max + keys_per_split - 1) / keys_per_split;

  DecodeArgs a{};
  a.q = q;
  a.k = reinterpret_cast<const __half2*>(k);
  a.v = reinterpret_cast<const __half2*>(v);
  a.out = out;
  if (n_splits > 1) {
    const DecodeScratchLayout l = decode_layout(s, n_splits);
    a.part_ml = static_cast<float2*>(scratch.data);
    a.part_acc = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch.data) + l.acc_offset);
  }
  a.n_q = s.n_q;
  a.n_kv = s.n_kv;
  a.q_pos0 = s.q_pos0;
  a.keys_per_split = keys_per_split;
  a.n_head = static_cast<int>(s.n_head);
  a.n_kv_head = static_cast<int>(s.n_kv_head);
  a.head_dim = static_cast<int>(s.head_dim);
  a.group = static_cast<int>(group);
  a.n_tiles = static_cast<int>(n_tiles);
  a.n_splits = static_cast<int>(n_splits);
  a.scale_log2 = static_cast<float>(static_cast<double>(s.scale) * kLog2e);
  a.causal = s.causal;
  a.position = position;

  const dim3 grid(static_cast<unsigned>(n_splits), static_cast<unsigned>(s.n_kv_head * n_tiles),
                  static_cast<unsigned>(grid_q));
  if (s.n_kv_head * n_tiles > 65535)
    fail(ErrorCategory::UNSUPPORTED,
         "cuda::attention_decode: " + std::to_string(s.n_kv_head) + " KV heads is too many");
  const int64_t pairs_per_lane = (s.head_dim / 2 + 31) / 32;
  if (pairs_per_lane <= 1)
    launch_decode_pairs<1>(a, group_tile, grid, stream);
  else if (pairs_per_lane <= 2)
    launch_decode_pairs<2>(a, group_tile, grid, stream);
  else
    launch_decode_pairs<4>(a, group_tile, grid, stream);
  if (n_splits > 1) {
    decode_merge_kernel<<<static_cast<unsigned>(s.n_q * s.n_head), 128, 0, stream>>>(a.part_ml, a.part_acc, out,
                                                                                     a.n_splits, a.head_dim);
    FERRY_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace ferry::cuda
