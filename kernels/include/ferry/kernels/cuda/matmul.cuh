// Quantized matrix products on the GPU: y[T, N] = x[T, K] · W[N, K]ᵀ with float32 activations in and out.
// - quant_gemv (T <= kGemvMaxTokens): reads each quantized weight byte once, never materialises FP16 weights.
// - dequant_gemm (any T): dequantizes W tile by tile straight to FP16 into caller-given scratch (its size bounds the
//   tile, so the VRAM budget bounds it), converts x to FP16, and runs a cuBLASLt FP16 GEMM with FP32 accumulation.
// - matmul picks between them.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <span>

#include "ferry/kernels/device_sizing.hpp"
#include "ferry/kernels/matrix.hpp"

namespace ferry::cuda {

inline constexpr int64_t kGemvMaxTokens = device_sizing::kGemvMaxTokens;

bool gemv_supported(GgmlType type) noexcept;
void quant_gemv(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, cudaStream_t stream);
// How the int8-activation GEMV (Q4_0, Q8_0, Q4_K, Q6_K; Q4_1 and Q5_K when fused) reads the weights: STAGED through a
// shared-memory ring filled by cp.async, or DIRECT from global memory into registers (gemv_i8.cu). Both give the same y
// bit for bit. A process-wide setting for benchmarks and tests; the default comes from FERRY_GEMV_PATH ("staged" or
// "direct"), else the faster one measured on the H200 (docs/kernels/gemv-notes.md).
enum class GemvPath : uint8_t { STAGED, DIRECT };
void set_gemv_path(GemvPath path) noexcept;
GemvPath gemv_path() noexcept;
const char* gemv_path_name(GemvPath path) noexcept;

// ys[i] = x · ws[i]ᵀ for several matrices sharing x (a block's q, k, v; gate and up): one launch when they share type
// and K and the type has the int8-activation kernel (at most 3 matrices), else one quant_gemv each.
void quant_gemv_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                      cudaStream_t stream);

// What quant_gemv_fused does around the product, so that a block's decode step needs no kernel of its own for it:
// how x is formed from the inputs while it is quantized to int8 (the GEMV stages x once per CTA anyway), and whether
// the product is added to y. Each option gives the values of the op it replaces followed by the GEMV, up to the
// order of the norm's sum of squares.
struct GemvFusion {
  enum class Input : uint8_t {
    PLAIN,     // x as given
    RMS_NORM,  // x := x / rms(x) ⊙ norm_weight (rms over each token's K values, + eps; norm_weight may be null: 1)
    SWIGLU,    // x := silu(x) ⊙ up (x is the gate), up [T, K]
  };
  Input input = Input::PLAIN;
  const float* norm_weight = nullptr;
  float eps = 0.0f;
  const float* up = nullptr;
  bool accumulate = false;  // y += x · Wᵀ (a residual add) instead of y = x · Wᵀ; y must not overlap x or up
};
// Whether quant_gemv_fused takes these matrices at n_tokens: 1 to 3 matrices of one int8-activation type (Q4_0, Q4_1,
// Q8_0, Q4_K, Q5_K, Q6_K) and one K, 1 <= n_tokens <= kGemvMaxTokens. (quant_gemv takes Q4_1 and Q5_K through its FP32
// decode until their int8 units have run on a GPU.)
bool gemv_fusable(std::span<const QuantMatrixView> ws, int64_t n_tokens) noexcept;
// ys[i] = fused x · ws[i]ᵀ as GemvFusion says, in one launch. INVALID_ARGUMENT where gemv_fusable is false or an
// output overlaps x or up.
void quant_gemv_fused(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                      const GemvFusion& fusion, cudaStream_t stream);

// Device scratch for dequant_gemm, sub-allocated by the caller (the arena).
struct GemmScratch {
  __half* weight = nullptr;  // a tile of dequantized weight rows
  size_t weight_elems = 0;
  __half* activations = nullptr;  // x converted to FP16: all n_tokens rows, or a chunk of them at a time
  size_t activation_elems = 0;
  // cuBLASLt workspace (optional). With none, only GEMM algorithms that need no workspace (no split-K) are used;
  // kGemmWorkspaceBytes lets cuBLAS pick what cublasGemmEx would.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Benchmark only (the FP32-then-cast comparison): when set, each tile is dequantized into this FP32 temporary of
  // weight_elems floats and then cast to FP16, instead of straight to FP16. Same values, more traffic and memory.
  float* fp32_tile = nullptr;
};
inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;
// Weight tiles are a multiple of this many rows (or the whole matrix), so every tile's output starts 256-byte aligned.
inline constexpr int64_t kGemmTileRowMultiple = device_sizing::kGemmTileRowMultiple;
// The smallest weight scratch dequant_gemm accepts for this matrix (one tile of rows), in elements.
size_t gemm_min_weight_scratch(const QuantMatrixView& w) noexcept;
// The activation scratch dequant_gemm needs for all n_tokens rows of x at once, in elements; it also runs with less
// (down to device_sizing::gemm_min_activation_scratch), converting and multiplying x in chunks of tokens.
inline size_t gemm_activation_scratch(const QuantMatrixView& w, int64_t n_tokens) noexcept {
  return device_sizing::gemm_activation_scratch(w, n_tokens);
}
// y is bit-for-bit the same whatever the scratch sizes: every (row tile, token chunk) runs the one cuBLASLt algorithm
// chosen for the whole product (see gemm.cu). The GEMMs go through a process-wide cuBLASLt handle; `cublas` is accepted
// for symmetry with matmul and is not used.
void dequant_gemm(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, const GemmScratch& scratch,
                  cublasHandle_t cublas, cudaStream_t stream);

// Whether matmul takes the GEMV for this matrix at n_tokens (else dequant_gemm, which needs scratch): the one rule
// that matmul and the scratch sizing of callers share.
bool matmul_uses_gemv(const QuantMatrixView& w, int64_t n_tokens) noexcept;
// GEMV when n_tokens <= kGemvMaxTokens and the type has a GEMV kernel, else dequant_gemm.
void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, const GemmScratch& scratch,
            cublasHandle_t cublas, cudaStream_t stream);
// matmul for several matrices sharing x: quant_gemv_batch on the GEMV path, else one matmul each.
void matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                  const GemmScratch& scratch, cublasHandle_t cublas, cudaStream_t stream);

}  // namespace ferry::cuda
