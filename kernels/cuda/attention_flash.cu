// Fused ("flash") attention for many queries: prefill and Flux. The scores of a tile of queries never leave the SM.
//
// Why: the chunked path (attention.cu) moves ~12 bytes per score through device memory (FP32 scores out of a cuBLAS
// GEMM, a softmax pass, P back in), which bounds it by that traffic: a Flux block (4608 x 4608 scores x 24 heads) took
// 2.70 ms on an H100 there, 11% of the tensor-core rate. Here each score exists only in registers.
// Technique (the online-softmax tiling of FlashAttention-2, written for mma.sync so it runs on sm_80 and up):
// - A CTA of kWarps warps owns kBlockQ = 16 * kWarps query rows of one head; each warp owns 16 rows. The warp's Q rows
//   are converted to FP16 once and stay in registers as mma A-fragments for the whole run.
// - K and V are walked in tiles of kBlockKv keys, double-buffered in shared memory by cp.async (tile j + 1 loads while
//   tile j computes). Rows are padded by 16 bytes so the 8 rows of every ldmatrix fall into distinct bank groups.
// - Per tile: S = Q Kᵀ (m16n8k16, FP32 accumulate), scaled into the log2 domain, masked (keys past n_kv; the causal
//   limit); the running row max m and sum l are updated, O is rescaled by exp2(m_old - m_new), P = exp2(s - m_new) is
//   rounded to FP16 and, in the accumulator layout it already has, becomes the A-fragment of O += P V (V read with
//   ldmatrix.trans). As on the chunked path, l sums the rounded P the GEMM multiplies, P stays unnormalised in (0, 1],
//   and O is divided by l once at the end.
// - Causal: a CTA stops at the tile that holds its last row's last visible key, and masks element by element only on
//   the tiles that cross a row's limit; the grid starts with the longest (last) query tiles.
// - GQA: query head h reads KV head h / group; CTAs of neighbouring query tiles of one head run together, so K/V of
//   that head are served from L2 after the first read.
// Supported: compute capability 8.0 and up (cp.async, m16n8k16), head_dim 64 or 128, q and out 8-byte aligned, k and
// v 16-byte aligned (their rows then are too). Anything else takes the chunked path (attention_flash_supported).
// Measurements and what would come next: docs/kernels/attention-notes.md.
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "../cpu/op_checks.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/check.cuh"

namespace ferry::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockQ = 16 * kWarps;  // query rows per CTA
constexpr int kBlockKv = 64;          // keys per tile
constexpr int kPadHalves = 8;         // 16 bytes of padding per shared row
constexpr double kLog2e = 1.4426950408889634073599246810019;

template <int kHeadDim>
struct Tile {
  static constexpr int kStride = kHeadDim + kPadHalves;   // halves between shared rows
  static constexpr int kHalves = kBlockKv * kStride;      // one K or V tile
  static constexpr int kSmemBytes = 2 * 2 * kHalves * 2;  // 2 stages x (K, V) x FP16
  static constexpr int kChunksPerRow = kHeadDim / 8;      // 16-byte cp.async chunks per key row
  static constexpr int kChunksPerThread = kBlockKv * kChunksPerRow / kThreads;
  static_assert(kChunksPerThread * kThreads == kBlockKv * kChunksPerRow);
};

struct FlashArgs {
  const float* q;   // [n_q, n_head, head_dim]
  const __half* k;  // [n_kv, n_kv_head, head_dim]
  const __half* v;
  float* out;  // [n_q, n_head, head_dim]
  int64_t n_q, n_kv, q_pos0;
  int n_head, group, kv_row;  // kv_row: elements between consecutive keys (n_kv_head * head_dim)
  float scale_log2;           // scale * log2(e)
  bool causal;
};

// The device code below needs sm_80; passes for older targets compile the kernel as a trap (never launched there).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; with valid == false the 16 bytes are zero-filled and nothing is read.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c (16 x 8, FP32) += a (16 x 16, FP16, row) * b (16 x 8, FP16, col).
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Sum of the two FP16 values of a packed pair, as floats.
__device__ __forceinline__ float half2_sum(uint32_t bits) {
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&bits));
  return f.x + f.y;
}

// Row r of the query tile as FP16 pairs at columns c, c + 1 (zeros for rows past n_q).
__device__ __forceinline__ uint32_t load_q_pair(const FlashArgs& a, int64_t row, int head, int head_dim, int col) {
  if (row >= a.n_q) return 0;
  const float2 v = *reinterpret_cast<const float2*>(a.q + (row * a.n_head + head) * head_dim + col);
  return pack_half2(v.x, v.y);
}

template <int kHeadDim>
__device__ __forceinline__ void load_kv_tile(const FlashArgs& a, __half* k_dst, __half* v_dst, int64_t key0,
                                             int kv_head) {
  using T = Tile<kHeadDim>;
#pragma unroll
  for (int i = 0; i < T::kChunksPerThread; ++i) {
    const int chunk = static_cast<int>(threadIdx.x) + i * kThreads;
    const int row = chunk / T::kChunksPerRow;
    const int col = (chunk % T::kChunksPerRow) * 8;
    const int64_t key = key0 + row;
    const bool valid = key < a.n_kv;
    // Past n_kv: zero-filled (a zero V row times P = 0 adds nothing; garbage could be NaN), read from a valid address.
    const int64_t offset = valid ? key * a.kv_row + static_cast<int64_t>(kv_head) * kHeadDim + col : 0;
    cp_async_16(shared_address(k_dst + row * T::kStride + col), a.k + offset, valid);
    cp_async_16(shared_address(v_dst + row * T::kStride + col), a.v + offset, valid);
  }
}

#endif  // sm_80 and up

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads, 2) flash_attention_kernel(FlashArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // cp.async and m16n8k16 need sm_80; the host never launches this on an older device
#else
  using T = Tile<kHeadDim>;
  constexpr int kSteps = kHeadDim / 16;  // k-steps of Q Kᵀ; also pairs of 8-wide column tiles of O
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __half* smem = reinterpret_cast<__half*>(smem_raw);  // [stage][K, V][kBlockKv][kStride]

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int g = lane / 4;  // the fragment's row (and row + 8)
  const int t = lane % 4;  // the fragment's column pair
  const int head = static_cast<int>(blockIdx.y);
  const int kv_head = head / a.group;
  // Longest tiles first under the causal mask (they are the last query rows).
  const int64_t q_tile = a.causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
  const int64_t q_first = q_tile * kBlockQ;
  const int64_t row0 = q_first + warp * 16 + g;  // this thread's two rows: row0 and row0 + 8
  const int64_t row1 = row0 + 8;

  // Keys this CTA may need: all, or up to the causal limit of its last row.
  int64_t n_keys = a.n_kv;
  if (a.causal) n_keys = min(a.n_kv, a.q_pos0 + min(q_first + kBlockQ, a.n_q));
  const int n_tiles = static_cast<int>((n_keys + kBlockKv - 1) / kBlockKv);

  load_kv_tile<kHeadDim>(a, smem, smem + T::kHalves, 0, kv_head);
  cp_async_commit();

  // Q as A-fragments: qa[s] covers columns 16 s .. 16 s + 15.
  uint32_t qa[kSteps][4];
#pragma unroll
  for (int s = 0; s < kSteps; ++s) {
    const int c = 16 * s + 2 * t;
    qa[s][0] = load_q_pair(a, row0, head, kHeadDim, c);
    qa[s][1] = load_q_pair(a, row1, head, kHeadDim, c);
    qa[s][2] = load_q_pair(a, row0, head, kHeadDim, c + 8);
    qa[s][3] = load_q_pair(a, row1, head, kHeadDim, c + 8);
  }

  float o[2 * kSteps][4];  // O: 8-wide column tiles
#pragma unroll
  for (int n = 0; n < 2 * kSteps; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max of rows row0, row1 (log2 domain)
  float l0 = 0.0f, l1 = 0.0f;            // this thread's share of the running sums

  // ldmatrix row addresses: lane l serves row l % 8 of matrix l / 8.
  const int mat = lane / 8;
  const int mat_row = lane % 8;
  // K (non-transposed): matrices (keys 0-7, d lo), (keys 0-7, d hi), (keys 8-15, d lo), (keys 8-15, d hi).
  const int k_lane_offset = ((mat / 2) * 8 + mat_row) * T::kStride + (mat % 2) * 8;
  // V (transposed): matrices (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15).
  const int v_lane_offset = ((mat % 2) * 8 + mat_row) * T::kStride + (mat / 2) * 8;

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1;
    if (j + 1 < n_tiles) {
      __half* next = smem + (stage ^ 1) * 2 * T::kHalves;
      load_kv_tile<kHeadDim>(a, next, next + T::kHalves, static_cast<int64_t>(j + 1) * kBlockKv, kv_head);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __half* ks = smem + stage * 2 * T::kHalves;
    const __half* vs = ks + T::kHalves;
    const uint32_t k_base = shared_address(ks + k_lane_offset);
    const uint32_t v_base = shared_address(vs + v_lane_offset);

    // S = Q Kᵀ for 64 keys: 8 tiles of 8 keys.
    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int ks_i = 0; ks_i < kSteps; ++ks_i) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b[4];
        ldmatrix_x4(k_base + static_cast<uint32_t>((np * 16 * T::kStride + ks_i * 16) * 2), b);
        mma_16816(s[2 * np], qa[ks_i], b[0], b[1]);
        mma_16816(s[2 * np + 1], qa[ks_i], b[2], b[3]);
      }
    }

    // Scale into the log2 domain; mask keys past n_kv and, under the causal mask, past each row's position.
    const int64_t key0 = static_cast<int64_t>(j) * kBlockKv;
    const bool past_end = key0 + kBlockKv > a.n_kv;
    const bool crosses_causal = a.causal && key0 + kBlockKv - 1 > a.q_pos0 + q_first;
    if (past_end || crosses_causal) {
      const int64_t limit0 = a.causal ? min(a.n_kv, a.q_pos0 + row0 + 1) : a.n_kv;  // keys < limit are visible
      const int64_t limit1 = a.causal ? min(a.n_kv, a.q_pos0 + row1 + 1) : a.n_kv;
#pragma unroll
      for (int n = 0; n < 8; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t key = key0 + n * 8 + 2 * t + e;
          s[n][e] = key < limit0 ? s[n][e] * a.scale_log2 : -INFINITY;
          s[n][2 + e] = key < limit1 ? s[n][2 + e] * a.scale_log2 : -INFINITY;
        }
      }
    } else {
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] *= a.scale_log2;
    }

    // Online softmax: the row max over this tile (the four lanes of a quad share a row).
    float tmax0 = m0, tmax1 = m1;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      tmax0 = fmaxf(tmax0, fmaxf(s[n][0], s[n][1]));
      tmax1 = fmaxf(tmax1, fmaxf(s[n][2], s[n][3]));
    }
#pragma unroll
    for (int d = 1; d <= 2; d <<= 1) {
      tmax0 = fmaxf(tmax0, __shfl_xor_sync(0xffffffffu, tmax0, d));
      tmax1 = fmaxf(tmax1, __shfl_xor_sync(0xffffffffu, tmax1, d));
    }
    // A row with no visible key yet keeps max -inf: subtract 0 instead, so exp2 gives 0 rather than NaN.
    const float base0 = tmax0 == -INFINITY ? 0.0f : tmax0;
    const float base1 = tmax1 == -INFINITY ? 0.0f : tmax1;
    const float corr0 = exp2f(m0 - base0);
    const float corr1 = exp2f(m1 - base1);
    m0 = tmax0;
    m1 = tmax1;
    l0 *= corr0;
    l1 *= corr1;
#pragma unroll
    for (int n = 0; n < 2 * kSteps; ++n) {
      o[n][0] *= corr0;
      o[n][1] *= corr0;
      o[n][2] *= corr1;
      o[n][3] *= corr1;
    }

    // P (FP16) as A-fragments, 16 keys per k-step, then O += P V.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t pa[4];
      pa[0] = pack_half2(exp2f(s[2 * kk][0] - base0), exp2f(s[2 * kk][1] - base0));
      pa[1] = pack_half2(exp2f(s[2 * kk][2] - base1), exp2f(s[2 * kk][3] - base1));
      pa[2] = pack_half2(exp2f(s[2 * kk + 1][0] - base0), exp2f(s[2 * kk + 1][1] - base0));
      pa[3] = pack_half2(exp2f(s[2 * kk + 1][2] - base1), exp2f(s[2 * kk + 1][3] - base1));
      l0 += half2_sum(pa[0]) + half2_sum(pa[2]);
      l1 += half2_sum(pa[1]) + half2_sum(pa[3]);
#pragma unroll
      for (int dp = 0; dp < kSteps; ++dp) {
        uint32_t b[4];
        ldmatrix_x4_trans(v_base + static_cast<uint32_t>((kk * 16 * T::kStride + dp * 16) * 2), b);
        mma_16816(o[2 * dp], pa, b[0], b[1]);
        mma_16816(o[2 * dp + 1], pa, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before the next iteration's load overwrites it
  }

  // The row sums over the quad, then out = O / l.
#pragma unroll
  for (int d = 1; d <= 2; d <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, d);
    l1 += __shfl_xor_sync(0xffffffffu, l1, d);
  }
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f;
  const float inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
  for (int n = 0; n < 2 * kSteps; ++n) {
    const int col = n * 8 + 2 * t;
    if (row0 < a.n_q)
      *reinterpret_cast<float2*>(a.out + (row0 * a.n_head + head) * kHeadDim + col) =
          make_float2(o[n][0] * inv0, o[n][1] * inv0);
    if (row1 < a.n_q)
      *reinterpret_cast<float2*>(a.out + (row1 * a.n_head + head) * kHeadDim + col) =
          make_float2(o[n][2] * inv1, o[n][3] * inv1);
  }
#endif
}

// The current device runs the kernel's instructions (compute capability 8.0 and up).
bool device_has_sm80() noexcept {
  int device = 0, major = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
  return major >= 8;
}

template <int kHeadDim>
void launch_flash(const FlashArgs& args, int64_t n_q_tiles, int n_head, cudaStream_t stream) {
  constexpr int bytes = Tile<kHeadDim>::kSmemBytes;
  // Above 48 KiB of dynamic shared memory a kernel must opt in; once per process and instance is enough.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(flash_attention_kernel<kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  FERRY_CUDA_CHECK(opt_in);
  const dim3 grid(static_cast<unsigned>(n_q_tiles), static_cast<unsigned>(n_head));
  flash_attention_kernel<kHeadDim><<<grid, kThreads, bytes, stream>>>(args);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_flash_supported(const AttentionShape& s, const void* q, const void* k, const void* v,
                               const void* out) noexcept {
  const auto aligned = [](const void* p, uintptr_t to) { return reinterpret_cast<uintptr_t>(p) % to == 0; };
  return (s.head_dim == 64 || s.head_dim == 128) && aligned(q, 8) && aligned(out, 8) && aligned(k, 16) &&
         aligned(v, 16) && (s.n_q + kBlockQ - 1) / kBlockQ <= INT32_MAX && s.n_head <= 65535 &&
         s.n_kv_head * s.head_dim <= INT32_MAX && device_has_sm80();
}

void attention_flash(const AttentionShape& s, const float* q, const __half* k, const __half* v, float* out,
                     cudaStream_t stream) {
  ferry::detail::check_attention("cuda::attention_flash", s);
  if (s.n_q == 0) return;
  if (q == nullptr || k == nullptr || v == nullptr || out == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cuda::attention_flash: q, k, v or out is null for " + std::to_string(s.n_q) + " queries");
  if (!attention_flash_supported(s, q, k, v, out))
    fail(ErrorCategory::UNSUPPORTED, "cuda::attention_flash: head_dim " + std::to_string(s.head_dim) +
                                         " (64 or 128 wanted), " + std::to_string(s.n_head) +
                                         " heads, pointers not aligned (q, out 8 bytes; k, v 16 bytes) or a "
                                         "device below compute capability 8.0");
  FlashArgs args{};
  args.q = q;
  args.k = k;
  args.v = v;
  args.out = out;
  args.n_q = s.n_q;
  args.n_kv = s.n_kv;
  args.q_pos0 = s.q_pos0;
  args.n_head = static_cast<int>(s.n_head);
  args.group = static_cast<int>(s.n_head / s.n_kv_head);
  args.kv_row = static_cast<int>(s.n_kv_head * s.head_dim);
  args.scale_log2 = static_cast<float>(static_cast<double>(s.scale) * kLog2e);
  args.causal = s.causal;
  const int64_t n_q_tiles = (s.n_q + kBlockQ - 1) / kBlockQ;
  if (s.head_dim == 64)
    launch_flash<64>(args, n_q_tiles, args.n_head, stream);
  else
    launch_flash<128>(args, n_q_tiles, args.n_head, stream);
}

}  // namespace ferry::cuda
