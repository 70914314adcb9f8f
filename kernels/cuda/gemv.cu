// Quantized GEMV: y[T, N] = x[T, K] · W[N, K]ᵀ for T <= 8 straight from the GGUF blocks.
//
// Roofline. At T = 1 a weight costs 2 FLOPs and 0.56 B (Q4_0) to 1.06 B (Q8_0): 2-4 FLOP/B against the H100's
// ~20 FLOP/B ridge, so the kernel is bound by reading the quantized bytes once. x (T·K·4 B) and y (T·N·4 B) are
// small next to W and stay in L2. Ideal time = quantized bytes / DRAM read bandwidth; the benchmark reports the rate
// against device-to-device copy bandwidth (bytes read + written), the measurable stand-in for it. Dequantizing to
// FP16 first would add 2 B/weight written and 2 B/weight read: 4-8x the traffic. At T = 8 the FP32 FMAs (16 per
// weight over 2 rows) start to matter on CUDA cores; that is the reason T stops at 8 and dequant_gemm takes over.
//
// Technique.
// - A warp owns 2 rows and walks them together: every staged x value it loads from shared memory feeds both rows.
//   A CTA has 8 warps (16 rows); the grid is N / 16 CTAs, so the scheduler balances the tail, not a fixed split.
// - x[0:T, K-segment] is staged once per CTA in shared memory as float (swizzled so the lanes' 16-byte reads are
//   bank-conflict free); K is cut into segments only when T·K floats exceed 56 KiB.
// - The 16 rows' quantized bytes stream through a 4-deep ring of shared-memory slots, one chunk (~600 B per row) per
//   slot, filled with 16-byte cp.async from the 16-byte-aligned pieces that cover each row's chunk (the 18-, 34- and
//   210-byte blocks are only 2-byte aligned, so lanes cannot read them with wide loads directly). DRAM sees
//   coalesced 16-byte reads and three chunks per CTA stay in flight however long the decode takes; the decode
//   reads shared memory at a few cycles' latency.
// - Lane work unit = ~4 bytes of quants of one block (gemv_units.cuh): a warp's lanes read a few hundred
//   consecutive staged bytes per step (few bank conflicts). Quants become floats by bit operations (no I2F), and
//   the group scale is applied once per 4 weights: acc += sc · Σ q·x (- mn · Σ x), FP32 throughout (acc[2][T]
//   registers); one warp-shuffle reduction per row and token ends it.
// - F16 / BF16 / F32 weights take a simpler kernel (gemv_float.cu): each lane reads 16-byte vectors of its rows
//   straight from global memory.
// - Q4_0, Q8_0, Q4_K and Q6_K (the common types) take the int8-activation variant (gemv_i8_kernel.cuh, units in
//   gemv_i8_units.cuh; Q4_1 and Q5_K through quant_gemv_fused only, until they have run on a GPU): same CTA shape and
//   cp.async ring, but each CTA quantizes its x segment into shared memory as int8 codes with one float scale per 32
//   elements (d = max|x| / 127, round half to even, exactly as the CPU GEMV's quantize_activations), and lanes multiply
//   4 weight codes by 4 codes per __dp4a, applying d_w·d_x once per run of 8-16 weights and any offset/min term as
//   m·d_x·Σq_x per group. Precision: x carries a rounding error of up to d_x / 2, so the output's normalised error is
//   ~E[d_x²] / (12 E[x²]) ≈ 1.5e-5 for uniform x, against ~1e-14 for the FP32 path; the weights are used exactly.
//   Llama.cpp and ferry's CPU GEMV accept the same. Other quantized types keep the FP32 decode below.
// - quant_gemv_batch runs the matrices that share x (q, k, v; gate, up) in one launch: a 1024-row matrix alone is 64
//   CTAs, too few to fill a 132-SM GPU.
//
// Invariants. K is a multiple of the block size (8 for F32/F16/BF16); W rows are consecutive; x is [T, K] float32,
// y is [T, N] float32 and every y element is written exactly once (no atomics, no pre-zeroing); results do not depend
// on the launch configuration. Nothing allocates or synchronises.
//
// Measurements, profiles and the designs tried and rejected: docs/kernels/gemv-notes.md.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/dequant.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/device_sizing.hpp"
#include "gemv_common.cuh"

namespace ferry::cuda {

bool gemv_supported(GgmlType type) noexcept {
  return can_dequantize(type);  // every type with a block decoder has a GEMV unit (gemv_units.cuh)
}

namespace detail {
// The float types are read in pseudo-blocks of 8 elements (one 16-byte vector of halves).
bool gemv_shape_supported(const QuantMatrixView& w) noexcept { return device_sizing::gemv_shape_supported(w); }
}  // namespace detail

namespace {

GemvPath default_gemv_path() noexcept {
  const char* env = std::getenv("FERRY_GEMV_PATH");
  if (env != nullptr && std::strcmp(env, "direct") == 0) return GemvPath::DIRECT;
  if (env != nullptr && std::strcmp(env, "staged") == 0) return GemvPath::STAGED;
  // Measured on the H200 (docs/kernels/gemv-notes.md): DIRECT is faster on 18 of 20 T = 1 shape/type pairs, by up
  // to 28% (Q4_K 32000 x 5120), and within 4% on the other two.
  return GemvPath::DIRECT;
}

std::atomic<GemvPath>& gemv_path_setting() noexcept {
  static std::atomic<GemvPath> path{default_gemv_path()};
  return path;
}

}  // namespace

void set_gemv_path(GemvPath path) noexcept { gemv_path_setting().store(path, std::memory_order_relaxed); }
GemvPath gemv_path() noexcept { return gemv_path_setting().load(std::memory_order_relaxed); }
const char* gemv_path_name(GemvPath path) noexcept { return path == GemvPath::DIRECT ? "direct" : "staged"; }

namespace {

// The checks every GEMV entry point makes; returns the row size in bytes.
int64_t checked_gemv_row_bytes(const QuantMatrixView& w, int64_t n_tokens) {
  const std::string name(type_name(w.type));
  if (!gemv_supported(w.type)) fail(ErrorCategory::UNSUPPORTED, "quant_gemv: no GEMV kernel for GGML type " + name);
  if (n_tokens < 1 || n_tokens > kGemvMaxTokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv: " + std::to_string(n_tokens) + " tokens, expected 1.." +
                                              std::to_string(kGemvMaxTokens) + " (use dequant_gemm above that)");
  if (w.n_rows < 0 || w.n_cols <= 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "quant_gemv " + name + ": bad shape " + std::to_string(w.n_rows) + " x " + std::to_string(w.n_cols));
  if (!detail::gemv_shape_supported(w))
    fail(ErrorCategory::INVALID_ARGUMENT,
         "quant_gemv " + name + ": K = " + std::to_string(w.n_cols) + " must be a multiple of 8 for float weights");
  const auto row_bytes = static_cast<int64_t>(ferry::row_bytes(w.type, w.n_cols));  // checks the block multiple
  if (reinterpret_cast<uintptr_t>(w.data) % 2 != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv " + name + ": weight data is not 2-byte aligned");
  if (w.n_rows > 0 && w.data == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv " + name + ": the weight pointer is null");
  return row_bytes;
}

}  // namespace

void quant_gemv(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, cudaStream_t stream) {
  const int64_t row_bytes = checked_gemv_row_bytes(w, n_tokens);
  if (w.n_rows == 0) return;
  if (x == nullptr || y == nullptr) fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv: the input or output is null");
  const int n_tok = static_cast<int>(n_tokens);
  if (detail::launch_gemv_i8(w, row_bytes, x, n_tok, y, stream)) return;
  if (detail::launch_gemv_q32(w, row_bytes, x, n_tok, y, stream)) return;
  if (detail::launch_gemv_k(w, row_bytes, x, n_tok, y, stream)) return;
  if (detail::launch_gemv_float(w, row_bytes, x, n_tok, y, stream)) return;
  fail(ErrorCategory::INTERNAL, "quant_gemv: gemv_supported(" + std::string(type_name(w.type)) + ") but no kernel");
}

void quant_gemv_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                      cudaStream_t stream) {
  if (ws.size() != ys.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "quant_gemv_batch: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  if (ws.empty()) return;
  const int64_t row_bytes = checked_gemv_row_bytes(ws[0], n_tokens);
  bool fusable = true;
  if (x == nullptr) fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv_batch: the input is null");
  for (size_t i = 0; i < ws.size(); ++i)
    if (ws[i].n_rows > 0 && ys[i] == nullptr)
      fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv_batch: output " + std::to_string(i) + " is null");
  for (const QuantMatrixView& w : ws) {
    checked_gemv_row_bytes(w, n_tokens);
    fusable = fusable && w.type == ws[0].type && w.n_cols == ws[0].n_cols;
  }
  if (fusable && detail::launch_gemv_i8_batch(ws, row_bytes, x, static_cast<int>(n_tokens), ys, stream)) return;
  for (size_t i = 0; i < ws.size(); ++i) quant_gemv(ws[i], x, n_tokens, ys[i], stream);
}

bool gemv_fusable(std::span<const QuantMatrixView> ws, int64_t n_tokens) noexcept {
  if (ws.empty() || ws.size() > static_cast<size_t>(detail::kGemvBatchMax) || n_tokens < 1 || n_tokens > kGemvMaxTokens)
    return false;
  for (const QuantMatrixView& w : ws)
    if (w.type != ws[0].type || w.n_cols != ws[0].n_cols) return false;
  return detail::gemv_i8_supported(ws[0].type);
}

void quant_gemv_fused(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                      const GemvFusion& fusion, cudaStream_t stream) {
  if (!gemv_fusable(ws, n_tokens))
    fail(ErrorCategory::INVALID_ARGUMENT,
         "quant_gemv_fused: " + std::to_string(ws.size()) + " matrices at " + std::to_string(n_tokens) +
             " tokens; expected 1 to 3 matrices of one type with an int8-activation kernel and one K, 1 to " +
             std::to_string(kGemvMaxTokens) + " tokens");
  if (ys.size() != ws.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "quant_gemv_fused: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  const int64_t row_bytes = checked_gemv_row_bytes(ws[0], n_tokens);
  for (size_t i = 0; i < ws.size(); ++i) {
    checked_gemv_row_bytes(ws[i], n_tokens);
    if (ws[i].n_rows > 0 && ys[i] == nullptr)
      fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv_fused: output " + std::to_string(i) + " is null");
  }
  if (x == nullptr) fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv_fused: the input is null");
  if (fusion.input == GemvFusion::Input::SWIGLU && fusion.up == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "quant_gemv_fused: SwiGLU without its up input");
  // Every CTA reads all of x (and up) while others already store: an output overlapping an input would be read after
  // it was written.
  using Range = std::pair<uintptr_t, uintptr_t>;
  const auto bytes_of = [](const float* p, int64_t n) {
    const auto b = reinterpret_cast<uintptr_t>(p);
    return Range{b, b + static_cast<uintptr_t>(n) * sizeof(float)};
  };
  const auto overlap = [](Range a, Range b) { return a.first < b.second && b.first < a.second; };
  const int64_t n_in = n_tokens * ws[0].n_cols;
  for (size_t i = 0; i < ws.size(); ++i) {
    const Range out = bytes_of(ys[i], n_tokens * ws[i].n_rows);
    const bool on_up = fusion.input == GemvFusion::Input::SWIGLU && overlap(out, bytes_of(fusion.up, n_in));
    if (ws[i].n_rows > 0 && (overlap(out, bytes_of(x, n_in)) || on_up))
      fail(ErrorCategory::INVALID_ARGUMENT,
           "quant_gemv_fused: output " + std::to_string(i) + " overlaps the input it is computed from");
  }
  if (!detail::launch_gemv_i8_fused(ws, row_bytes, x, static_cast<int>(n_tokens), ys, fusion, stream))
    fail(ErrorCategory::INTERNAL,
         "quant_gemv_fused: no int8-activation kernel for " + std::string(type_name(ws[0].type)));
}

}  // namespace ferry::cuda
