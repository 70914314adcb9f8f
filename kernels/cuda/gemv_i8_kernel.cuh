// The int8-activation GEMV for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K: kernel template and launcher (design note:
// gemv.cu; units: gemv_i8_units.cuh). Instantiated per type family in gemv_i8_legacy.cu and gemv_i8_kquants.cu, so no
// translation unit carries all of its kernels; gemv_i8.cu dispatches.
// Two ways to read the weights (GemvPath): STAGED, described here, and DIRECT (the default), which drops the ring and
// has the units read global memory into registers, one chunk ahead (see quant_gemv_i8_kernel).
// Same CTA shape and slot layout as quant_gemv_kernel (gemv_kernel.cuh): 16 rows per CTA, 2 per warp, the rows'
// blocks streamed through a 4-deep ring of shared-memory slots by 16-byte cp.async, except that each warp fills and
// waits for its own rows' slots (a __syncwarp per chunk, no CTA-wide barrier after x is staged), so a slow warp holds
// up no other. What differs from quant_gemv_kernel is x and the math:
// each CTA quantizes x[0:T, K-segment] into shared memory as int8 with one float scale per 32 elements (and the
// group's d·Σq for the min/offset terms), and a lane multiplies 4 codes by 4 activations per __dp4a, applying the
// scales once per run of 8-16 weights: about 1 instruction per weight instead of 4-5 FP32 ones.
// Fusion (GemvFusion, CudaOps' fused ops): since every CTA reads and quantizes x itself, it can form x on the way, and
// the final store can add the product to y. The SwiGLU product silu(gate)·up is formed as the values are staged. The
// RMS norm x / rms(x) ⊙ w needs each token's sum of squares over all of K before any value could be scaled, but the
// int8 codes of a 32-element group do not change when the group is multiplied by a positive number (only its scale d
// does), and the product is linear in the scales: so the kernel quantizes x ⊙ w, sums the squares of x in the same
// pass (each thread over the groups it stages, in a fixed order), and multiplies each token's outputs by its
// 1 / rms at the end. No extra pass over x, no extra barrier before the weights stream. That removes a kernel and a
// round trip of the activation through memory per fused op, which is most of a small model's decode step.
#pragma once

#include <cuda_pipeline_primitives.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <span>

#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "gemv_i8_units.cuh"
#include "gemv_kernel.cuh"
#include "reduce.cuh"

namespace ferry::cuda::detail {

// Shared memory for the quantized x segment (1.25 B per element and token). 24 KiB holds all of K <= 16384 at T = 1
// and keeps a CTA small enough for 3-4 per SM; at T = 8 K is cut into segments of 2304.
constexpr int kGemvI8XBytes = 24 * 1024;

__host__ __device__ inline int64_t i8_xq_row_words(int64_t seg_len) { return (seg_len / 4 + 3) / 4 * 4; }
__host__ __device__ inline int64_t i8_x_bytes(int n_tok, int64_t seg_len) {
  return (n_tok * (i8_xq_row_words(seg_len) * 4 + seg_len / 32 * 8) + 15) / 16 * 16;
}

// The fused input's parameters as the kernel reads them (GemvFusion without the host-side choice of op).
struct GemvI8Input {
  GemvFusion::Input kind;
  const float* norm_weight;  // RMS_NORM, may be null
  const float* up;           // SWIGLU
};

// x[0:T, s0 : s0 + len] (len a multiple of 32), formed as `in` says (RMS_NORM: x ⊙ norm_weight, the 1 / rms comes at
// the end, and ss[t] += this thread's sum of x² of token t), to int8 codes q = rint(x · 127 / max|x|) (round half to
// even, as the CPU GEMV's quantize_activations) in xq, and (d = max|x| / 127, d · Σq) per 32-element group in xd. Two
// neighbouring lanes per group, 16 elements each, joined by two shuffles (the group's max and its code sum): one
// thread per group held 32 values plus 32 loads of the norm weight or `up` in flight, which made the fused kernels
// spill or run two CTAs per SM where the plain one runs three. A group holding Inf or NaN gets d = NaN, so every
// output it feeds is NaN.
template <int kT, bool kFused>
__device__ __forceinline__ void stage_x_i8(int* xq, float2* xd, const float* __restrict__ x, int n_tok, int64_t n_cols,
                                           int64_t s0, int len, int64_t xq_row, int64_t xd_row, bool x_vec,
                                           const GemvI8Input& in, float (&ss)[kT]) {
  static_assert(kGemvThreads % 2 == 0, "lanes pair up");
  const int groups = len / 32;
  // Both lanes of a pair take every iteration together (blockDim.x and the half count are even), so the pair's
  // shuffles always find their partner.
  const unsigned pair_mask = 3u << (threadIdx.x % 32 & ~1u);
  for (int i = threadIdx.x; i < 2 * n_tok * groups; i += blockDim.x) {
    const int half = i % 2, t = i / 2 / groups, g = i / 2 % groups;
    const int64_t e0 = s0 + 32 * g + 16 * half;  // this lane's first element
    const float* src = x + t * n_cols + e0;
    float v[16];
    if (x_vec) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(src) + k);
        v[4 * k] = f.x, v[4 * k + 1] = f.y, v[4 * k + 2] = f.z, v[4 * k + 3] = f.w;
      }
    } else {
#pragma unroll
      for (int k = 0; k < 16; ++k) v[k] = __ldg(src + k);
    }
    // The values the replaced op would have written, up to RMS_NORM's per-token factor (SiluMul's expression from
    // elementwise.cu).
    if (kFused && in.kind == GemvFusion::Input::RMS_NORM) {
      float sq = 0.0f;
#pragma unroll
      for (int k = 0; k < 16; ++k) sq += v[k] * v[k];
#pragma unroll
      for (int tt = 0; tt < kT; ++tt)  // static indices: ss stays in registers
        if (tt == t) ss[tt] += sq;
      if (in.norm_weight != nullptr) {
        const float* nw = in.norm_weight + e0;
#pragma unroll
        for (int k = 0; k < 16; ++k) v[k] *= __ldg(nw + k);
      }
    } else if (kFused && in.kind == GemvFusion::Input::SWIGLU) {
      const float* u = in.up + t * n_cols + e0;
#pragma unroll
      for (int k = 0; k < 16; ++k) v[k] = v[k] / (1.0f + expf(-v[k])) * __ldg(u + k);
    }
    // |x| as integers orders like floats, with Inf and NaN above every finite value.
    uint32_t amax_bits = 0;
#pragma unroll
    for (int k = 0; k < 16; ++k) amax_bits = max(amax_bits, __float_as_uint(v[k]) & 0x7fffffffu);
    amax_bits = max(amax_bits, __shfl_xor_sync(pair_mask, amax_bits, 1));
    const bool bad = amax_bits >= 0x7f800000u;
    const float amax = bad ? 0.0f : __uint_as_float(amax_bits);
    const float d = amax / 127.0f;
    // A group so small that 127 / amax overflows is zero to int8 precision: all codes 0 (as the CPU GEMV).
    const float inv = amax > 0.0f && 127.0f / amax <= 3.402823466e38f ? 127.0f / amax : 0.0f;
    int words[4];
    int sum = 0;
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      // fl(x · inv) + 1.5·2^23 rounds to an integer (half to even) whose low byte is the code in two's complement;
      // __fmul_rn keeps the product rounded on its own, as the CPU's nearbyint(x * inv) sees it.
      uint32_t b[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) b[k] = __float_as_uint(__fmul_rn(v[4 * w + k], inv) + 12582912.0f);
      const uint32_t word = __byte_perm(__byte_perm(b[0], b[1], 0x0040u), __byte_perm(b[2], b[3], 0x0040u), 0x5410u);
      words[w] = static_cast<int>(word);
      sum = __dp4a(words[w], 0x01010101, sum);
    }
    sum += __shfl_xor_sync(pair_mask, sum, 1);
    reinterpret_cast<int4*>(xq + t * xq_row + 8 * g)[half] = make_int4(words[0], words[1], words[2], words[3]);
    const float nan = __int_as_float(0x7fc00000);
    if (half == 0) xd[t * xd_row + g] = bad ? make_float2(nan, nan) : make_float2(d, d * static_cast<float>(sum));
  }
}

template <int kN>
__device__ __forceinline__ void lds_words(const int* p, int* out) {
  if constexpr (kN == 4) {
    const int4 u = *reinterpret_cast<const int4*>(p);
    out[0] = u.x, out[1] = u.y, out[2] = u.z, out[3] = u.w;
  } else {
    static_assert(kN == 2, "runs of 2 or 4 words");
    const int2 u = *reinterpret_cast<const int2*>(p);
    out[0] = u.x, out[1] = u.y;
  }
}

// Matrices sharing x, type and K, computed by one grid: matrix m's row groups are CTAs [group_end[m-1], group_end[m]).
// One launch instead of three (q, k, v) or two (gate, up) fills the GPU better: a 1024-row matrix alone is 64 CTAs.
struct GemvI8Batch {
  const uint8_t* w[kGemvBatchMax];
  float* y[kGemvBatchMax];
  int64_t n_rows[kGemvBatchMax];
  int64_t group_end[kGemvBatchMax];
  int count;
};

// One CTA computes kGemvRowsPerCta consecutive rows (warp w: rows 2w, 2w + 1) of one matrix of the batch, as
// quant_gemv_kernel. kDirect (GemvPath::DIRECT): no shared-memory ring; the units read their bytes straight from global
// memory into registers, and each warp loads chunk c + 1 of its rows while it computes chunk c (software pipelining
// by registers), so its loads stay in flight without a barrier, a slot or the piece bookkeeping of the ring.
// kFused: the kernel takes GemvFusion's input forms and accumulate; without it they compile away, so the plain
// GEMV's registers and instructions are what they were before fusion existed.
// Decode (T <= 2) asks for at least three CTAs per SM (at most 85 registers): the fused T = 1 kernels had grown to
// 98-100 registers, two CTAs per SM against the plain ones' three at 80, and the 8B's fused block was 22% slower than
// the plain one on the H100; with the two-lane staging above and this bound (no T <= 2 instance spills: sm_90,
// ptxas -v) it is within 3% (docs/kernels/gemv-notes.md).
template <GgmlType kType, int kT, bool kDirect, bool kFused>
__global__ void __launch_bounds__(kGemvThreads, kT <= 2 ? 3 : 2)
    quant_gemv_i8_kernel(GemvI8Batch batch, int64_t row_bytes, int64_t n_cols, const float* __restrict__ x, int n_tok,
                         int64_t seg_len, bool w_aligned, bool x_vec, GemvI8Input in, float eps, bool accumulate) {
  // This CTA's matrix, picked with static indices only (a dynamic index into the parameters would go through local
  // memory).
  const uint8_t* __restrict__ w = batch.w[0];
  float* __restrict__ y = batch.y[0];
  int64_t n_rows = batch.n_rows[0], first_group = 0;
#pragma unroll
  for (int m = 1; m < kGemvBatchMax; ++m)
    if (m < batch.count && blockIdx.x >= batch.group_end[m - 1])
      w = batch.w[m], y = batch.y[m], n_rows = batch.n_rows[m], first_group = batch.group_end[m - 1];
  using U = GemvI8Unit<kType>;
  using G = GemvStage<U>;
  constexpr int kRW = kGemvRowsPerWarp;
  constexpr int kS = kGemvStages;
  extern __shared__ int4 smem_i4[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t cta_row0 = (static_cast<int64_t>(blockIdx.x) - first_group) * kGemvRowsPerCta;
  const int64_t row0 = cta_row0 + warp * kRW;
  const int64_t xq_row = i8_xq_row_words(seg_len), xd_row = seg_len / 32;
  int* xq = reinterpret_cast<int*>(smem_i4);
  float2* xd = reinterpret_cast<float2*>(xq + n_tok * xq_row);
  uint8_t* slots = reinterpret_cast<uint8_t*>(smem_i4) + i8_x_bytes(n_tok, seg_len);
  const uint8_t* w_end = w + n_rows * row_bytes;

  constexpr int kBlkStep = 32 / U::kParts;
  constexpr int kUnitsPerLane = U::kChunk / U::kQK / kBlkStep;
  static_assert(32 % U::kParts == 0 && U::kChunk / U::kQK % kBlkStep == 0, "a chunk is whole steps of the warp");
  const int part = lane % U::kParts, blk_lane = lane / U::kParts;
  int x_word[U::kRuns], x_grp[U::kRuns];
#pragma unroll
  for (int j = 0; j < U::kRuns; ++j) x_word[j] = U::x_word(part, j), x_grp[j] = U::x_group(part, j);

  bool valid[kRW];
#pragma unroll
  for (int r = 0; r < kRW; ++r) valid[r] = row0 + r < n_rows;
  float ss[kT];  // RMS_NORM: this thread's share of each token's sum of squares (stage_x_i8)
#pragma unroll
  for (int t = 0; t < kT; ++t) ss[t] = 0.0f;
  float acc[kRW][kT];
#pragma unroll
  for (int r = 0; r < kRW; ++r)
#pragma unroll
    for (int t = 0; t < kT; ++t) acc[r][t] = 0.0f;

  for (int64_t s0 = 0; s0 < n_cols; s0 += seg_len) {
    const int len = static_cast<int>(min(seg_len, n_cols - s0));
    const int n_chunks = (len + U::kChunk - 1) / U::kChunk;
    auto issue = [&](int c) {
      if constexpr (kDirect) return;
      if (c < n_chunks) {
        const int64_t byte0 = (s0 + static_cast<int64_t>(c) * U::kChunk) / U::kQK * U::kBytes;
        const int cb = min(U::kChunk, len - c * U::kChunk) / U::kQK * U::kBytes;
        uint8_t* stage = slots + (c % kS) * G::kStageBytes;
        for (int i = lane; i < kRW * G::kPieces; i += 32) {  // this warp's rows only
          const int r = warp * kRW + i / G::kPieces, p = i % G::kPieces;
          if (cta_row0 + r >= n_rows) continue;
          const uint8_t* start = w + (cta_row0 + r) * row_bytes + byte0;
          const uint8_t* src =
              reinterpret_cast<const uint8_t*>(reinterpret_cast<uintptr_t>(start) & ~uintptr_t{15}) + 16 * p;
          if (src < start + cb) fetch_piece(stage + r * G::kSlot + 16 * p, src, w, w_end);
        }
      }
      __pipeline_commit();
    };

    // The units of chunk c that this lane reads: from the chunk's ring slot, or (kDirect) from global memory.
    using Raws = typename U::Raw[kUnitsPerLane][kRW];
    auto load_chunk = [&](int c, Raws& raw) {
      const int nblk = min(U::kChunk, len - c * U::kChunk) / U::kQK;
      const int64_t byte0 = (s0 + static_cast<int64_t>(c) * U::kChunk) / U::kQK * U::kBytes;
      const uint8_t* base[kRW];
#pragma unroll
      for (int r = 0; r < kRW; ++r) {
        const uint8_t* start = w + (valid[r] ? row0 + r : row0) * row_bytes + byte0;
        base[r] = kDirect ? start
                          : slots + (c % kS) * G::kStageBytes + (warp * kRW + r) * G::kSlot +
                                (reinterpret_cast<uintptr_t>(start) & 15u);
      }
#pragma unroll
      for (int i = 0; i < kUnitsPerLane; ++i) {
        const int blk = blk_lane + i * kBlkStep;
        if (blk < nblk) {
#pragma unroll
          for (int r = 0; r < kRW; ++r) raw[i][r] = U::load(base[r] + blk * U::kBytes, part, w_aligned);
        }
      }
    };

    __syncthreads();  // every warp is done with the previous segment's x
    for (int c = 0; c < kS - 1; ++c) issue(c);
    stage_x_i8<kT, kFused>(xq, xd, x, n_tok, n_cols, s0, len, xq_row, xd_row, x_vec, in, ss);
    __syncthreads();  // x is staged
    // (A build that requested DIRECT's first chunk before staging x, and compiled the fusion into every kernel,
    // decoded the 8B 7% slower on the H100; both were undone together, so which one cost it is not known.)
    Raws next;
    if constexpr (kDirect) {
      if (valid[0] && n_chunks > 0) load_chunk(0, next);
    }

    for (int c = 0; c < n_chunks; ++c) {
      if constexpr (!kDirect) {
        __pipeline_wait_prior(kS - 2);
        __syncwarp();  // chunk c of this warp's rows has landed for every lane; chunk c - 1's slot is free
        issue(c + kS - 1);
      }
      if (!valid[0]) continue;

      const int nblk = min(U::kChunk, len - c * U::kChunk) / U::kQK;
      const int blk_x0 = c * (U::kChunk / U::kQK);
      Raws raw;
      if constexpr (kDirect) {
#pragma unroll
        for (int i = 0; i < kUnitsPerLane; ++i)
#pragma unroll
          for (int r = 0; r < kRW; ++r) raw[i][r] = next[i][r];
        if (c + 1 < n_chunks) load_chunk(c + 1, next);  // in flight while chunk c is computed
      } else {
        load_chunk(c, raw);
      }
#pragma unroll
      for (int i = 0; i < kUnitsPerLane; ++i) {
        const int blk = blk_lane + i * kBlkStep;
        if (blk >= nblk) continue;
        int q[kRW][U::kRuns][U::kRunLen];
        float d[kRW][U::kRuns], m[kRW][U::kRuns];
#pragma unroll
        for (int r = 0; r < kRW; ++r) U::decode(raw[i][r], part, q[r], d[r], m[r]);
        const int x_blk = blk_x0 + blk;
#pragma unroll
        for (int t = 0; t < kT; ++t) {
          if (t >= n_tok) break;
          const int* xt = xq + t * xq_row + x_blk * (U::kQK / 4);
          const float2* dt = xd + t * xd_row + x_blk * (U::kQK / 32);
#pragma unroll
          for (int j = 0; j < U::kRuns; ++j) {
            int xw[U::kRunLen];
            lds_words<U::kRunLen>(xt + x_word[j], xw);
            const float2 ds = dt[x_grp[j]];
#pragma unroll
            for (int r = 0; r < kRW; ++r) {
              int s = 0;
#pragma unroll
              for (int k = 0; k < U::kRunLen; ++k) s = __dp4a(q[r][j][k], xw[k], s);
              acc[r][t] = fmaf(d[r][j] * ds.x, static_cast<float>(s), acc[r][t]);
              if constexpr (U::kHasMin) acc[r][t] = fmaf(m[r][j], ds.y, acc[r][t]);
            }
          }
        }
      }
    }
  }
  if constexpr (!kDirect) __pipeline_wait_prior(0);
  // RMS_NORM: every thread took part above (invalid rows only skip the products), so the CTA sums the squares here,
  // in a fixed order (bit for bit the same on every run and path), and scales each token's outputs by 1 / rms.
  __shared__ float norm_inv[kT];
  const bool rms = kFused && in.kind == GemvFusion::Input::RMS_NORM;
  if (rms) {
    __shared__ float partial[kGemvWarps][kT];
#pragma unroll
    for (int t = 0; t < kT; ++t) {
      const float v = warp_sum(ss[t]);
      if (lane == 0) partial[warp][t] = v;
    }
    __syncthreads();
    if (threadIdx.x < n_tok) {
      float total = 0.0f;
#pragma unroll
      for (int w8 = 0; w8 < kGemvWarps; ++w8) total += partial[w8][threadIdx.x];
      norm_inv[threadIdx.x] = 1.0f / sqrtf(total / static_cast<float>(n_cols) + eps);  // as norm.cu
    }
    __syncthreads();
  }
  gemv_reduce_store<kRW, kT>(acc, valid, row0, n_tok, n_rows, y, kFused && accumulate, rms ? norm_inv : nullptr);
}

// A launch's fusion as the kernel takes it, and whether x can be read as float4.
struct GemvI8Launch {
  GemvI8Input in;
  float eps;
  bool accumulate;
  bool x_vec;
};

template <GgmlType kType, int kT, bool kDirect, bool kFused>
void launch_i8_path(const GemvI8Batch& batch, int64_t row_bytes, int64_t n_cols, bool w_aligned, const float* x,
                    int n_tok, const GemvI8Launch& f, cudaStream_t stream) {
  using U = GemvI8Unit<kType>;
  using G = GemvStage<U>;
  // Segment: all of K if its codes fit, else the largest multiple of 256 elements that does.
  const int64_t cap = std::max<int64_t>(256, int64_t{kGemvI8XBytes} * 4 / (5 * n_tok) / 256 * 256);
  const int64_t seg_len = std::min<int64_t>(n_cols, cap);
  constexpr size_t kRingBytes = kDirect ? 0 : static_cast<size_t>(kGemvStages) * G::kStageBytes;
  const size_t smem = static_cast<size_t>(i8_x_bytes(n_tok, seg_len)) + kRingBytes;
  static const bool configured = [] {
    FERRY_CUDA_CHECK(cudaFuncSetAttribute(quant_gemv_i8_kernel<kType, kT, kDirect, kFused>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(kGemvI8XBytes + 1024 + kRingBytes)));
    return true;
  }();
  (void)configured;
  const int64_t grid = batch.group_end[batch.count - 1];
  quant_gemv_i8_kernel<kType, kT, kDirect, kFused><<<static_cast<unsigned>(grid), kGemvThreads, smem, stream>>>(
      batch, row_bytes, n_cols, x, n_tok, seg_len, w_aligned, f.x_vec, f.in, f.eps, f.accumulate);
  FERRY_CUDA_CHECK_LAUNCH();
}

template <GgmlType kType, int kT>
void launch_i8_t(const GemvI8Batch& batch, int64_t row_bytes, int64_t n_cols, bool w_aligned, const float* x, int n_tok,
                 const GemvI8Launch& f, cudaStream_t stream) {
  const bool fused = f.in.kind != GemvFusion::Input::PLAIN || f.accumulate;
  if (gemv_path() == GemvPath::DIRECT) {
    if (fused) return launch_i8_path<kType, kT, true, true>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
    return launch_i8_path<kType, kT, true, false>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
  }
  if (fused) return launch_i8_path<kType, kT, false, true>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
  launch_i8_path<kType, kT, false, false>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
}

template <GgmlType kType>
void launch_i8(const GemvI8Batch& batch, int64_t row_bytes, int64_t n_cols, bool w_aligned, const float* x, int n_tok,
               const GemvI8Launch& f, cudaStream_t stream) {
  if (n_tok == 1) return launch_i8_t<kType, 1>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
  if (n_tok == 2) return launch_i8_t<kType, 2>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
  if (n_tok <= 4) return launch_i8_t<kType, 4>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
  return launch_i8_t<kType, 8>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
}

// Up to kGemvBatchMax matrices of type kType and one K against x in one launch, fused as `fusion` says (the caller
// checked the shapes and pointers).
template <GgmlType kType>
void launch_gemv_i8_type(std::span<const QuantMatrixView> ws, int64_t row_bytes, const float* x, int n_tok,
                         std::span<float* const> ys, const GemvFusion& fusion, cudaStream_t stream) {
  GemvI8Batch batch{};
  bool w_aligned = row_bytes % GemvI8Unit<kType>::kAlign == 0;
  int64_t groups = 0;
  for (const QuantMatrixView& w : ws) {
    if (w.n_rows == 0) continue;
    const auto m = static_cast<size_t>(batch.count++);
    batch.w[m] = static_cast<const uint8_t*>(w.data);
    batch.y[m] = ys[static_cast<size_t>(&w - ws.data())];
    batch.n_rows[m] = w.n_rows;
    groups += (w.n_rows + kGemvRowsPerCta - 1) / kGemvRowsPerCta;
    batch.group_end[m] = groups;
    w_aligned = w_aligned && reinterpret_cast<uintptr_t>(w.data) % GemvI8Unit<kType>::kAlign == 0;
  }
  if (batch.count == 0) return;
  const int64_t n_cols = ws[0].n_cols;
  GemvI8Launch f{{fusion.input, fusion.norm_weight, fusion.up}, fusion.eps, fusion.accumulate, false};
  f.x_vec = reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
            n_cols % 4 == 0;  // x's float4 loads; norm_weight and up are read a float at a time
  launch_i8<kType>(batch, row_bytes, n_cols, w_aligned, x, n_tok, f, stream);
}

// gemv_i8_legacy.cu and gemv_i8_kquants.cu instantiate launch_gemv_i8_type for their types with this.
#define FERRY_GEMV_I8_INSTANTIATE(TYPE)                                                                           \
  template void launch_gemv_i8_type<GgmlType::TYPE>(std::span<const QuantMatrixView>, int64_t, const float*, int, \
                                                    std::span<float* const>, const GemvFusion&, cudaStream_t)

}  // namespace ferry::cuda::detail
