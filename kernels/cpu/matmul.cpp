// cpu::matmul: y[T, N] = x[T, K] W[N, K]^T for a GGML-typed weight in host memory.
//
// Two regimes, split at kCpuInt8MaxTokens:
//  - T <= 64 (decode, short prompt chunks): fused dequantize + dot reading every weight byte once from memory (gemv.hpp
//    has the design and the int8-activation error budget), parallel over output rows with oneTBB, each task a grain
//    of rows worth at least kGemvGrainBytes of weights so the per-task overhead stays far below the time to stream
//    them. Up to kCpuGemvMaxTokens tokens in one kernel call; more in groups of that many, each group over the task's
//    rows while they are still in cache. Against the GEMM path below (14336 x 4096 Q4_0, 2 cores of a Xeon with
//    AVX-512, ms at T = 16 / 32 / 64): int8 12.0 / 24.4 / 48.3; Eigen tiles with AVX-512 18.2 / 45.1 / 67.9, with
//    AVX2 40.4 / 57.6 / 97.9, baseline SSE2 38.2 / 65.2 / 115.7. At T = 128 the AVX-512 tiles take 57 ms, the int8
//    path would take ~97: the split stays at 64.
//  - T > 64 (prefill, diffusion): compute-bound. Row tiles of W are dequantized to float32 into a per-thread buffer
//    (tile bounded by kTileBytes and 256 rows) and multiplied with Eigen's GEMM (single-threaded inside: oneTBB owns
//    the threads), tiles in parallel. Dequantization costs O(N K) against O(T N K) for the GEMM, so each weight is
//    dequantized exactly once. Error: float32 accumulation only (the activations are not quantized on this path).
//    The tile's Eigen code is compiled per ISA and picked at run time (gemm_tile.hpp): AVX2 3x, AVX-512 4.5x the
//    baseline's SSE2 on one core.
#include <tbb/blocked_range.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <vector>

#include "dequant.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "gemm_tile.hpp"
#include "gemv.hpp"
#include "op_checks.hpp"

namespace ferry::cpu {
namespace {

constexpr uint64_t kGemvGrainBytes = 32 * 1024;
constexpr int64_t kTileBytes = 4 * 1024 * 1024;  // float32 bytes of one dequantized tile (per thread)
constexpr int64_t kTileMaxRows = 256;
constexpr int64_t kTileMinRows = 16;

detail::GemvRowsFn pick_gemv(GgmlType type, int n_tokens) {
  detail::GemvRowsFn fn = nullptr;
  if (detail::active_isa() == detail::CpuIsa::AVX2) fn = detail::gemv_kernel_avx2(type, n_tokens);
  if (fn == nullptr) fn = detail::gemv_kernel_scalar(type, n_tokens);
  if (fn == nullptr)
    fail(ErrorCategory::INTERNAL, "cpu::matmul: no GEMV kernel for type " + std::string(type_name(type)));
  return fn;
}

void gemv(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  // Token groups of kCpuGemvMaxTokens (and one smaller remainder), each run over a task's rows in turn while those
  // rows are still in cache: the weights come from memory once, whatever the token count.
  const int64_t group = std::min(n_tokens, kCpuGemvMaxTokens);
  const int64_t remainder = n_tokens % group;
  const detail::GemvRowsFn fn = pick_gemv(w.type, static_cast<int>(group));
  const detail::GemvRowsFn fn_remainder = remainder > 0 ? pick_gemv(w.type, static_cast<int>(remainder)) : nullptr;
  detail::GemvArgs args{};
  args.w = static_cast<const uint8_t*>(w.data);
  args.row_bytes = row_bytes(w.type, w.n_cols);
  args.n_cols = w.n_cols;
  args.n_rows = w.n_rows;
  args.y = y;
  // Reused across calls on this thread: decode calls allocate nothing once warm.
  thread_local std::vector<detail::Q8Block> xq;
  if (detail::gemv_uses_q8(w.type)) {
    xq.resize(static_cast<size_t>(n_tokens * (w.n_cols / detail::kQ8BlockSize)));
    detail::quantize_activations(x, n_tokens, w.n_cols, xq.data());
    args.xq = xq.data();
  } else {
    args.xf = x;
  }
  const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kGemvGrainBytes / args.row_bytes));
  const int64_t xq_per_token = w.n_cols / detail::kQ8BlockSize;
  // Isolated: while this thread waits for the loop it must not pick up an unrelated task (a matmul called from another
  // oneTBB task) that would resize `xq` under the loop still reading it.
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, w.n_rows, grain), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t t0 = 0; t0 < n_tokens; t0 += group) {
        detail::GemvArgs g = args;  // token rows t0.. of x (quantized or not) and of y; y's row stride is n_rows
        if (g.xq != nullptr) g.xq += t0 * xq_per_token;
        if (g.xf != nullptr) g.xf += t0 * w.n_cols;
        g.y += t0 * w.n_rows;
        (n_tokens - t0 >= group ? fn : fn_remainder)(g, r.begin(), r.end());
      }
    });
  });
}

detail::GemmTileFn pick_gemm_tile() {
  switch (detail::active_gemm_isa()) {
#if FERRY_HAVE_GEMM_AVX
    case detail::GemmIsa::AVX512:
      return detail::gemm_tile_avx512;
    case detail::GemmIsa::AVX2:
      return detail::gemm_tile_avx2;
#endif
    default:
      return detail::gemm_tile_baseline;
  }
}

// Rows per tile: at least 4 tiles per thread when N allows (load balance), at most kTileBytes of floats.
int64_t tile_rows(int64_t n_rows, int64_t n_cols) {
  const int64_t threads = std::max(1, tbb::this_task_arena::max_concurrency());
  int64_t rows = (n_rows + 4 * threads - 1) / (4 * threads);
  rows = std::min({rows, kTileMaxRows, std::max<int64_t>(1, kTileBytes / (4 * n_cols))});
  rows = (std::max(rows, kTileMinRows) + 15) / 16 * 16;
  return std::min(rows, n_rows);
}

void gemm(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t k = w.n_cols, n = w.n_rows;
  const int64_t rows = tile_rows(n, k);
  const int64_t n_tiles = (n + rows - 1) / rows;
  const uint64_t rb = row_bytes(w.type, k);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const detail::GemmTileFn multiply = pick_gemm_tile();
  tbb::enumerable_thread_specific<std::vector<float>> buffers;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_tiles, 1), [&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t tile = range.begin(); tile < range.end(); ++tile) {
      const int64_t r0 = tile * rows;
      const int64_t nr = std::min(rows, n - r0);
      const float* wt = nullptr;
      if (w.type == GgmlType::F32) {
        wt = reinterpret_cast<const float*>(base + static_cast<uint64_t>(r0) * rb);
      } else {
        std::vector<float>& buf = buffers.local();
        buf.resize(static_cast<size_t>(rows * k));
        // Serial on purpose: a nested parallel loop could let this thread pick up another tile that reuses `buf`.
        detail::dequantize_serial(w.type, base + static_cast<uint64_t>(r0) * rb, buf.data(), nr * k);
        wt = buf.data();
      }
      multiply(x, n_tokens, k, wt, nr, y + r0, n);
    }
  });
}

}  // namespace

void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  ferry::detail::check_matmul("cpu::matmul", w, x, n_tokens, y);
  if (n_tokens == 0 || w.n_rows == 0) return;
  if (n_tokens <= kCpuInt8MaxTokens)
    gemv(w, x, n_tokens, y);
  else
    gemm(w, x, n_tokens, y);
}

}  // namespace ferry::cpu
