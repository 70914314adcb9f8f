// Softmax attention on the GPU: the chunked tensor-core path (prefill, Flux), the dispatch, the scratch sizing, and
// the KV-cache write. The decode kernel is in attention_decode.cu.
//
// Roofline (Flux block: n_q = n_kv = 4608, 24 heads, head_dim 128): 4 * n_q * n_kv * head_dim * n_head = 2.6e11
// FLOP, 0.3 ms at the H100's ~850 TFLOP/s of FP16 GEMM. A CUDA-core kernel would run at ~50 TFLOP/s at best (5+ ms);
// a scalar one far slower. So both products run on tensor cores through cuBLAS.
// Technique, per chunk of C query rows (C from the scratch: the scores of one chunk are all that ever exist):
//   1. pack:    q rows -> FP16 Qh [n_kv_head][C * group][head_dim], row m = r * group + g, so the `group` query heads
//               that share a KV head form one matrix and one GEMM batch entry reads each K/V head once.
//   2. S = alpha * Qh Kᵀ    cublasGemmStridedBatchedEx, FP16 in, FP32 accumulate and out, batched over KV heads,
//               alpha = scale * log2(e) so the softmax can use exp2. K is read in place from the cache (its rows are
//               n_kv_head * head_dim apart: the GEMM's leading dimension). With a causal mask the GEMM stops at the
//               chunk's last visible key, so a causal run in several chunks skips most of the masked triangle
//               (attention() uses at least 4 chunks for long causal runs: see preferred_chunk).
//   3. softmax: one block per score row: max over the visible keys, p = exp2(s - max) rounded to FP16 and written
//               over the first half of the row's own FP32 bytes (P needs no memory of its own), 1 / sum(p) (the sum of
//               the rounded values, so the normalisation matches what the GEMM multiplies) into a small array.
//               P stays unnormalised: its values are in (0, 1] with the row maximum exactly 1, where FP16 keeps 11
//               bits; normalised probabilities of long rows (~1e-4) would sit among FP16's subnormals.
//   4. O = P V  cublasGemmStridedBatchedEx, FP32 out, P read with twice the FP32 row stride.
//   5. unpack:  out[q, h, :] = O[kvh][m, :] * inv_sum[kvh][m].
// Memory traffic per score: 4 B written by the GEMM, 4 B read and 2 B written by the softmax, 2 B read by the second
// GEMM: ~12 B. For Flux that is ~6 GB per call, ~2 ms at 3 TB/s against 0.3 ms of tensor-core work: this form is bound
// by the score traffic, not by the FLOPs.
// Invariants: the scratch is never exceeded (chunk size from attention_max_chunk); rows of S are 8-element aligned
// (ld a multiple of 8) so both GEMMs see 16-byte aligned rows.
// Measurements and what would come next: docs/kernels/attention-notes.md.
#include "ferry/kernels/cuda/attention.cuh"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "../cpu/op_checks.hpp"
#include "attention_internal.cuh"
#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/device_sizing.hpp"
#include "reduce.cuh"
#include "tool_marks.hpp"

namespace ferry::cuda {
namespace {

using detail::block_max;
using detail::block_sum;
using detail::grid_for;

constexpr int kSoftmaxThreads = 256;
constexpr int kElementThreads = 256;
constexpr double kLog2e = 1.4426950408889634073599246810019;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

using ChunkLayout = device_sizing::AttentionChunkLayout;
ChunkLayout chunk_layout(const AttentionShape& s, int64_t chunk) {
  return device_sizing::attention_chunk_layout(s, chunk);
}

// Rows of C queries, one per (KV head, m): converts q [n_q, n_head, hd] rows q0 .. q0 + c - 1 into Qh.
__global__ void pack_q_kernel(const float* q, __half* qh, int64_t q0, int64_t c, int n_head, int group, int hd) {
  const int64_t m_rows = c * group;
  const int64_t total = c * n_head * hd;
  const float* src = q + q0 * n_head * hd;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(idx % hd);
    const int64_t rh = idx / hd;
    const int h = static_cast<int>(rh % n_head);
    const int64_t r = rh / n_head;
    const int64_t m = r * group + h % group;
    qh[((h / group) * m_rows + m) * hd + d] = __float2half_rn(src[idx]);
  }
}

// out rows q0 .. q0 + c - 1 from O and the row normalisers.
__global__ void unpack_o_kernel(const float* o, const float* inv_sum, float* out, int64_t q0, int64_t c, int n_head,
                                int group, int hd) {
  const int64_t m_rows = c * group;
  const int64_t total = c * n_head * hd;
  float* dst = out + q0 * n_head * hd;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int d = static_cast<int>(idx % hd);
    const int64_t rh = idx / hd;
    const int h = static_cast<int>(rh % n_head);
    const int64_t r = rh / n_head;
    const int64_t row = (h / group) * m_rows + r * group + h % group;
    dst[idx] = o[row * hd + d] * inv_sum[row];
  }
}

// Which keys score row `row` may see: all n_kv_eff, or with the causal mask those up to its query's position.
__device__ __forceinline__ int64_t visible_keys(int64_t row, int64_t m_rows, int group, int64_t qpos_first,
                                                int64_t n_kv_eff, bool causal) {
  if (!causal) return n_kv_eff;
  const int64_t r = (row % m_rows) / group;
  return min(n_kv_eff, qpos_first + r + 1);
}

// Softmax of rows short enough to stay in registers: kItems per thread, one read of S. The block_max barrier orders
// every read of the row before any write of P over it.
template <int kItems>
__global__ void __launch_bounds__(kSoftmaxThreads)
    softmax_rows_kernel(float* s, float* inv_sum, int64_t m_rows, int group, int64_t n_kv_eff, int64_t ld,
                        int64_t qpos_first, bool causal) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  float* srow = s + row * ld;
  __half* prow = reinterpret_cast<__half*>(srow);
  const int64_t vis = visible_keys(row, m_rows, group, qpos_first, n_kv_eff, causal);
  float vals[kItems];
  float local_max = -INFINITY;
#pragma unroll
  for (int it = 0; it < kItems; ++it) {
    const int64_t j = threadIdx.x + static_cast<int64_t>(it) * kSoftmaxThreads;
    vals[it] = j < vis ? srow[j] : -INFINITY;
    local_max = fmaxf(local_max, vals[it]);
  }
  const float row_max = block_max(local_max, red);
  float local_sum = 0.0f;
#pragma unroll
  for (int it = 0; it < kItems; ++it) {
    const int64_t j = threadIdx.x + static_cast<int64_t>(it) * kSoftmaxThreads;
    const __half p = __float2half_rn(j < vis ? exp2f(vals[it] - row_max) : 0.0f);
    local_sum += __half2float(p);
    if (j < n_kv_eff) prow[j] = p;
  }
  const float sum = block_sum(local_sum, red);
  if (threadIdx.x == 0) inv_sum[row] = 1.0f / sum;
}

// Rows of any length: a max pass over S, then batches of kBatch values per thread read into registers, a barrier, and
// the batch's P written. A batch's P lands on FP32 elements [base / 2, (base + B) / 2), all read in this batch or
// earlier, so the in-place overlay never destroys a score that is still to be read.
constexpr int kLongBatch = 8;
__global__ void __launch_bounds__(kSoftmaxThreads)
    softmax_long_rows_kernel(float* s, float* inv_sum, int64_t m_rows, int group, int64_t n_kv_eff, int64_t ld,
                             int64_t qpos_first, bool causal) {
  __shared__ float red[32];
  const int64_t row = blockIdx.x;
  float* srow = s + row * ld;
  __half* prow = reinterpret_cast<__half*>(srow);
  const int64_t vis = visible_keys(row, m_rows, group, qpos_first, n_kv_eff, causal);
  float local_max = -INFINITY;
  for (int64_t j = threadIdx.x; j < vis; j += kSoftmaxThreads) local_max = fmaxf(local_max, srow[j]);
  const float row_max = block_max(local_max, red);
  float local_sum = 0.0f;
  constexpr int64_t kStep = static_cast<int64_t>(kLongBatch) * kSoftmaxThreads;
  for (int64_t base = 0; base < n_kv_eff; base += kStep) {
    float vals[kLongBatch];
#pragma unroll
    for (int it = 0; it < kLongBatch; ++it) {
      const int64_t j = base + threadIdx.x + static_cast<int64_t>(it) * kSoftmaxThreads;
      vals[it] = j < vis ? srow[j] : -INFINITY;
    }
    __syncthreads();
#pragma unroll
    for (int it = 0; it < kLongBatch; ++it) {
      const int64_t j = base + threadIdx.x + static_cast<int64_t>(it) * kSoftmaxThreads;
      const __half p = __float2half_rn(j < vis ? exp2f(vals[it] - row_max) : 0.0f);
      local_sum += __half2float(p);
      if (j < n_kv_eff) prow[j] = p;
    }
  }
  const float sum = block_sum(local_sum, red);
  if (threadIdx.x == 0) inv_sum[row] = 1.0f / sum;
}

void launch_softmax(float* scores, float* inv_sum, int64_t n_rows, int64_t m_rows, int group, int64_t n_kv_eff,
                    int64_t ld, int64_t qpos_first, bool causal, cudaStream_t stream) {
  const int64_t items = (n_kv_eff + kSoftmaxThreads - 1) / kSoftmaxThreads;
  const auto grid = static_cast<unsigned>(n_rows);
#define FERRY_SOFTMAX_CASE(N)                                                                                     \
  if (items <= (N)) {                                                                                             \
    softmax_rows_kernel<N>                                                                                        \
        <<<grid, kSoftmaxThreads, 0, stream>>>(scores, inv_sum, m_rows, group, n_kv_eff, ld, qpos_first, causal); \
    FERRY_CUDA_CHECK_LAUNCH();                                                                                    \
    return;                                                                                                       \
  }
  FERRY_SOFTMAX_CASE(1)
  FERRY_SOFTMAX_CASE(2)
  FERRY_SOFTMAX_CASE(4)
  FERRY_SOFTMAX_CASE(8)
  FERRY_SOFTMAX_CASE(16)
  FERRY_SOFTMAX_CASE(32)
#undef FERRY_SOFTMAX_CASE
  softmax_long_rows_kernel<<<grid, kSoftmaxThreads, 0, stream>>>(scores, inv_sum, m_rows, group, n_kv_eff, ld,
                                                                 qpos_first, causal);
  FERRY_CUDA_CHECK_LAUNCH();
}

// cuBLAS takes int dimensions: refuse shapes whose leading dimensions or sizes do not fit.
void check_chunked_limits(const AttentionShape& s, int64_t chunk) {
  const int64_t group = s.n_head / s.n_kv_head;
  if (s.n_kv_head * s.head_dim > INT_MAX || round_up(s.n_kv, 8) * 2 > INT_MAX || chunk * group > INT_MAX ||
      chunk * s.n_head > INT_MAX)
    fail(ErrorCategory::UNSUPPORTED, "cuda::attention: shape n_kv " + std::to_string(s.n_kv) + ", heads " +
                                         std::to_string(s.n_head) + "x" + std::to_string(s.head_dim) +
                                         " exceeds cuBLAS's 32-bit dimensions");
}

void check_args(const char* op, const AttentionShape& s, const void* q, const void* k, const void* v, const void* out) {
  ferry::detail::check_attention(op, s);
  if (s.n_q > 0 && (q == nullptr || k == nullptr || v == nullptr || out == nullptr))
    fail(ErrorCategory::INVALID_ARGUMENT,
         std::string(op) + ": q, k, v or out is null for " + std::to_string(s.n_q) + " queries");
}

// The chunk attention() asks for when the scratch allows it (measured on an H100, bench_attention_cuda).
// Without a mask: the whole sequence; fewer, larger GEMMs win and small chunks gain nothing from L2 (Flux block:
// 2.72 ms in one chunk, 2.84 ms in 4, 3.92 ms in 36). With the causal mask: at least kCausalChunks chunks, because each
// chunk's GEMMs stop at its last visible key, so 4 chunks do 62.5% of the square's work (llama-3-8B prefill of 4096:
// 2.34 ms in 1 chunk, 1.77 ms in 4, 1.85 ms in 16).
int64_t preferred_chunk(const AttentionShape& s) {
  constexpr int64_t kCausalSplitMinRows = 1024;
  constexpr int64_t kCausalChunks = 4;
  if (!s.causal || s.n_q < kCausalSplitMinRows) return s.n_q;
  return (s.n_q + kCausalChunks - 1) / kCausalChunks;
}

// FERRY_ATTENTION_PATH (device_sizing::attention_flash_allowed), read once per process.
bool flash_allowed() {
  static const bool allowed = device_sizing::attention_flash_allowed();
  return allowed;
}

}  // namespace

bool attention_uses_decode(const AttentionShape& s) noexcept { return device_sizing::attention_uses_decode(s); }

size_t attention_scratch_bytes(const AttentionShape& s, int64_t chunk_rows) {
  return device_sizing::attention_scratch_bytes(s, chunk_rows);
}

int64_t attention_max_chunk(const AttentionShape& s, size_t scratch_bytes) {
  ferry::detail::check_attention("cuda::attention_max_chunk", s);
  if (s.n_q <= 0) return 0;
  const ChunkLayout one = chunk_layout(s, 1);
  if (one.overflow || one.total > scratch_bytes) return 0;
  // The exact bytes one more query row adds to the four regions; alignment adds at most 4 * kScratchAlign on top,
  // which the loop below takes off again (a few rows at most).
  const uint64_t per_row = static_cast<uint64_t>(s.n_head) *
                           (static_cast<uint64_t>(s.head_dim) * 6 + static_cast<uint64_t>(round_up(s.n_kv, 8)) * 4 + 4);
  int64_t chunk =
      std::clamp<int64_t>(static_cast<int64_t>(std::min<uint64_t>(scratch_bytes / per_row, INT64_MAX)), 1, s.n_q);
  while (chunk > 1) {
    const ChunkLayout l = chunk_layout(s, chunk);
    if (!l.overflow && l.total <= scratch_bytes) break;
    --chunk;
  }
  return chunk;
}

void attention_chunked(const AttentionShape& s, const float* q, const __half* k, const __half* v, float* out,
                       const AttentionScratch& scratch, int64_t chunk_rows, cublasHandle_t cublas,
                       cudaStream_t stream) {
  check_args("cuda::attention", s, q, k, v, out);
  if (s.n_q == 0) return;
  const int64_t max_chunk = scratch.data ? attention_max_chunk(s, scratch.bytes) : 0;
  if (max_chunk == 0)
    fail(ErrorCategory::BUDGET, "cuda::attention: scratch of " + std::to_string(scratch.bytes) +
                                    " bytes cannot hold one query row of the chunked path (needs " +
                                    std::to_string(chunk_layout(s, 1).total) + " bytes for " +
                                    std::to_string(s.n_head) + " heads x " + std::to_string(s.n_kv) + " keys)");
  // Equal chunks rather than full chunks and a small remainder: the last GEMMs are then as efficient as the others.
  const int64_t cap = std::clamp<int64_t>(chunk_rows, 1, max_chunk);
  const int64_t n_chunks = (s.n_q + cap - 1) / cap;
  const int64_t chunk = std::min(cap, round_up((s.n_q + n_chunks - 1) / n_chunks, 16));
  check_chunked_limits(s, chunk);

  const ChunkLayout layout = chunk_layout(s, chunk);
  auto* base = static_cast<unsigned char*>(scratch.data);
  auto* qh = reinterpret_cast<__half*>(base + layout.qh);
  auto* scores = reinterpret_cast<float*>(base + layout.scores);
  auto* o = reinterpret_cast<float*>(base + layout.o);
  auto* inv_sum = reinterpret_cast<float*>(base + layout.inv_sum);

  const int group = static_cast<int>(s.n_head / s.n_kv_head);
  const int hd = static_cast<int>(s.head_dim);
  const int kv_row = static_cast<int>(s.n_kv_head * s.head_dim);  // elements between consecutive keys
  const float alpha_scores = static_cast<float>(static_cast<double>(s.scale) * kLog2e);
  const float one = 1.0f, zero = 0.0f;
  FERRY_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  FERRY_CUBLAS_CHECK(cublasSetPointerMode(cublas, CUBLAS_POINTER_MODE_HOST));

  for (int64_t q0 = 0; q0 < s.n_q; q0 += chunk) {
    const int64_t c = std::min(chunk, s.n_q - q0);
    const int64_t m_rows = c * group;
    const int64_t n_kv_eff = s.causal ? std::min(s.n_kv, s.q_pos0 + q0 + c) : s.n_kv;
    const int64_t ld = round_up(n_kv_eff, 8);
    const int64_t elems = c * s.n_head * s.head_dim;

    pack_q_kernel<<<grid_for(elems, kElementThreads), kElementThreads, 0, stream>>>(
        q, qh, q0, c, static_cast<int>(s.n_head), group, hd);
    FERRY_CUDA_CHECK_LAUNCH();
    // Column-major view: Sᵀ [n_kv_eff x m_rows] = K [hd x n_kv]ᵀ · Qhᵀ [hd x m_rows], one batch entry per KV head.
    FERRY_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n_kv_eff), static_cast<int>(m_rows), hd, &alpha_scores, k,
        CUDA_R_16F, kv_row, hd, qh, CUDA_R_16F, hd, m_rows * hd, &zero, scores, CUDA_R_32F, static_cast<int>(ld),
        m_rows * ld, static_cast<int>(s.n_kv_head), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    // For initcheck (tool_marks.hpp): the scores as one range, the rows' padding up to ld included, which the GEMM
    // does not write and the softmax never reads (it reads the visible keys only).
    detail::mark_written_for_tools(scores, static_cast<size_t>(s.n_kv_head * m_rows * ld) * sizeof(float), stream);
    launch_softmax(scores, inv_sum, s.n_kv_head * m_rows, m_rows, group, n_kv_eff, ld, s.q_pos0 + q0, s.causal, stream);
    // Oᵀ [hd x m_rows] = V [hd x n_kv] · Pᵀ [n_kv_eff x m_rows]; P's rows are 2 * ld halves apart (FP32 overlay).
    FERRY_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        cublas, CUBLAS_OP_N, CUBLAS_OP_N, hd, static_cast<int>(m_rows), static_cast<int>(n_kv_eff), &one, v, CUDA_R_16F,
        kv_row, hd, scores, CUDA_R_16F, static_cast<int>(2 * ld), m_rows * 2 * ld, &zero, o, CUDA_R_32F, hd,
        m_rows * hd, static_cast<int>(s.n_kv_head), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    detail::mark_written_for_tools(o, static_cast<size_t>(s.n_kv_head * m_rows * hd) * sizeof(float), stream);
    unpack_o_kernel<<<grid_for(elems, kElementThreads), kElementThreads, 0, stream>>>(
        o, inv_sum, out, q0, c, static_cast<int>(s.n_head), group, hd);
    FERRY_CUDA_CHECK_LAUNCH();
  }
}

void attention(const AttentionShape& s, const float* q, const __half* k, const __half* v, float* out,
               const AttentionScratch& scratch, cublasHandle_t cublas, cudaStream_t stream, DevicePosition position) {
  check_args("cuda::attention", s, q, k, v, out);
  if (s.n_q == 0) return;
  // The decode kernel loads q as float2 and K/V as half2; a misaligned view (never the arena's) takes the GEMM path.
  const bool aligned = reinterpret_cast<uintptr_t>(q) % 8 == 0 && reinterpret_cast<uintptr_t>(k) % 4 == 0 &&
                       reinterpret_cast<uintptr_t>(v) % 4 == 0;
  if (attention_uses_decode(s) && aligned) {
    attention_decode(s, q, k, v, out, scratch, stream, position);
    return;
  }
  if (position.active())
    fail(ErrorCategory::UNSUPPORTED, "cuda::attention: " + std::to_string(s.n_q) +
                                         " queries take the flash or chunked path, which a replayed step cannot "
                                         "move (only the decode path reads its position on the device)");
  if (flash_allowed() && attention_flash_supported(s, q, k, v, out)) {
    attention_flash(s, q, k, v, out, stream);
    return;
  }
  attention_chunked(s, q, k, v, out, scratch, preferred_chunk(s), cublas, stream);
}

namespace {

// Rows pos0 + shift .. of the caches; a replayed step whose rows would pass the cache's end writes nothing (the host
// checked the captured rows, the engine checks every replay's position against the layers' limits).
__global__ void store_kv_kernel(const float* k, const float* v, __half* k_cache, __half* v_cache, int64_t n_tokens,
                                int64_t pos0, int64_t row_width, int64_t capacity, DevicePosition position) {
  const int64_t first = pos0 + position.shift();
  if (first < 0 || first > capacity - n_tokens) return;
  __half* k_dst = k_cache + first * row_width;
  __half* v_dst = v_cache + first * row_width;
  const int64_t n = n_tokens * row_width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    k_dst[i] = __float2half_rn(k[i]);
    v_dst[i] = __float2half_rn(v[i]);
  }
}

}  // namespace

void store_kv(const float* k, const float* v, __half* k_cache, __half* v_cache, int64_t n_tokens, int64_t pos0,
              int64_t row_width, int64_t capacity, cudaStream_t stream, DevicePosition position) {
  if (n_tokens < 0 || pos0 < 0 || row_width < 0 || capacity < 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::store_kv: n_tokens " + std::to_string(n_tokens) + ", pos0 " +
                                              std::to_string(pos0) + ", row_width " + std::to_string(row_width) +
                                              ", capacity " + std::to_string(capacity) + " must be non-negative");
  if (pos0 > capacity - n_tokens)  // pos0 + n_tokens > capacity, without overflow
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::store_kv: rows " + std::to_string(pos0) + " .. +" +
                                              std::to_string(n_tokens) + " exceed the cache's " +
                                              std::to_string(capacity) + " rows");
  const int64_t n = n_tokens * row_width;
  if (n == 0) return;
  if (k == nullptr || v == nullptr || k_cache == nullptr || v_cache == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cuda::store_kv: a pointer is null for " + std::to_string(n_tokens) + " tokens");
  store_kv_kernel<<<grid_for(n, kElementThreads), kElementThreads, 0, stream>>>(k, v, k_cache, v_cache, n_tokens, pos0,
                                                                                row_width, capacity, position);
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
