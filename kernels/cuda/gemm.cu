// dequant_gemm: y[T, N] = x[T, K] · W[N, K]ᵀ for any T, as "dequantize a tile of W to FP16, then a tensor-core
// GEMM", tile by tile through caller-given scratch.
//
// Roofline. The GEMM does 2·T·N·K FLOPs on FP16 operands (H100: ~600+ TFLOP/s through cuBLAS); the dequantization
// streams N·K·(b + 2) bytes (b = quantized bytes per weight, 0.56 for Q4_0) at ~2.9 TB/s. Their ratio,
// (b + 2)·F / (2·T·BW), is the overhead over cuBLAS on pre-dequantized FP16 weights: ~0.5 at T = 512 and ~0.07 at
// T = 4096 for Q4_0 when the FP16 tile makes a round trip through DRAM; a tile that fits in L2 (50 MB) is partly
// read back from L2. The GEMM itself reads the FP16 tile either way, so the baseline pays that too.
//
// Technique.
// - x is converted to FP16 once into scratch.activations (T·K halves), then for each tile of R rows
//   (R = scratch.weight_elems / K, rounded down to a multiple of 64, or all N rows): dequantize_fp16 writes the tile
//   into scratch.weight and one GEMM writes y[:, r0 : r0 + R]. When the activation scratch holds fewer than T rows,
//   x goes in balanced chunks of C rows (device_sizing::gemm_token_chunk): per weight tile, each chunk is converted
//   and multiplied in turn (the conversion is repeated per tile; it costs T·K·6 bytes against the tile's R·K·2). At
//   Flux's T = 4608 the FP16 copy of linear2's input alone is 141 MB: chunks keep it under the sizing cap. Row-major y[T, N] is column-major [N, T] with ld N;
//   the row-major tile [R, K] is column-major [K, R], so op(A) = Aᵀ with lda = K, B = x16 column-major [K, T].
// - The GEMM goes through cuBLASLt, not cublasGemmEx, because cublasGemmEx picks its kernel (tile shape, split-K)
//   per call shape: tiles of R rows and a single tile of N rows could then sum K in different orders and differ in
//   the last bits. Here the algorithm is chosen once for the whole matrix (m = N, heuristic top-1, the choice
//   cublasGemmEx would make) and every tile runs that same algorithm, so y does not depend on the scratch size. An
//   algorithm that cannot run a tile's m is replaced by that tile's own heuristic choice (never seen on H100;
//   bit-equality across scratch sizes is then not promised). Token chunks work the same way: the algorithm of the
//   whole T is checked on the chunk's shape and used for it.
// - Choices are cached per (N, T, K, workspace, pointer alignments); a call costs a map lookup and a few descriptor
//   calls on the host.
//
// Invariants. Scratch below gemm_min_weight_scratch (64 rows, or N if smaller) or activation scratch below T·K throws
// BUDGET before anything is enqueued. All work is enqueued on `stream`; nothing allocates device memory or
// synchronises. The FP16 rounding of W and x is the only approximation beyond FP32 accumulation, within FP16's range:
// a value of |x| or |W| above 65504 becomes infinite and its output rows inf or NaN (the GEMV path, T <= 8, never
// converts x to FP16: it reads FP32, or int8 codes with FP32 scales). LLM activations stay far below that; a model
// whose activations do not needs BF16 operands here.
//
// Measurements against cuBLAS on FP16 weights and what would come next: docs/kernels/gemm-notes.md.
#include <cublasLt.h>

#include "ferry/kernels/device_sizing.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "dequant_kernels.cuh"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/dequant.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "tool_marks.hpp"

namespace ferry::cuda {

namespace detail {
bool gemv_shape_supported(const QuantMatrixView& w) noexcept;  // gemv.cu
}  // namespace detail

namespace {

// One cuBLASLt handle for the process: it is not tied to a stream, and creating one per call costs milliseconds.
// Never destroyed: at exit the CUDA driver may already be gone.
cublasLtHandle_t lt_handle() {
  static const cublasLtHandle_t handle = [] {
    cublasLtHandle_t h = nullptr;
    FERRY_CUBLAS_CHECK(cublasLtCreate(&h));
    return h;
  }();
  return handle;
}

struct DescDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* d) const noexcept { cublasLtMatmulDescDestroy(d); }
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const noexcept { cublasLtMatrixLayoutDestroy(l); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const noexcept { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, DescDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, DescDeleter>;

Layout make_layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  FERRY_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
  return Layout(l);
}

MatmulDesc make_desc() {
  cublasLtMatmulDesc_t d = nullptr;
  FERRY_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  MatmulDesc desc(d);
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  FERRY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof(op_t)));
  FERRY_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof(op_n)));
  return desc;
}

uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  return a == 0 ? 256u : static_cast<uint32_t>(std::min<uintptr_t>(256, a & (~a + 1)));
}

// The four layouts of one GEMM call with m output rows (a tile).
struct Layouts {
  Layout a, b, c;
  Layouts(int64_t m, int64_t t, int64_t k, int64_t ldc)
      : a(make_layout(CUDA_R_16F, k, m, k)),
        b(make_layout(CUDA_R_16F, k, t, k)),
        c(make_layout(CUDA_R_32F, m, t, ldc)) {}
};

struct AlgoKey {
  int device;
  int64_t n, t, k, m;  // m: the tile rows this entry is for (n for the whole-matrix choice)
  int64_t tc;          // the chunk's tokens this entry is for (t for the whole-matrix choice)
  size_t workspace;
  uint32_t align_a, align_b, align_c;
  auto operator<=>(const AlgoKey&) const = default;
};

class AlgoCache {
 public:
  // The algorithm for tiles of m rows and chunks of tc tokens: the whole-product choice when it supports them.
  cublasLtMatmulAlgo_t get(const AlgoKey& key, cublasLtMatmulDesc_t desc, const Layouts& layouts) {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      if (auto it = m_algos.find(key); it != m_algos.end()) return it->second;
    }
    cublasLtMatmulAlgo_t algo;
    if (key.m == key.n && key.tc == key.t) {
      algo = heuristic(key, desc, layouts);
    } else {
      AlgoKey full = key;
      full.m = key.n;
      full.tc = key.t;
      const Layouts full_layouts(key.n, key.t, key.k, key.n);
      algo = get(full, desc, full_layouts);
      cublasLtMatmulHeuristicResult_t check{};
      const cublasStatus_t st = cublasLtMatmulAlgoCheck(lt_handle(), desc, layouts.a.get(), layouts.b.get(),
                                                        layouts.c.get(), layouts.c.get(), &algo, &check);
      if (st != CUBLAS_STATUS_SUCCESS || check.workspaceSize > key.workspace) algo = heuristic(key, desc, layouts);
    }
    std::lock_guard<std::mutex> lock(m_mutex);
    m_algos.emplace(key, algo);
    return algo;
  }

 private:
  static cublasLtMatmulAlgo_t heuristic(const AlgoKey& key, cublasLtMatmulDesc_t desc, const Layouts& layouts) {
    cublasLtMatmulPreference_t p = nullptr;
    FERRY_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p));
    Preference pref(p);
    const uint64_t ws = key.workspace;
    FERRY_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    FERRY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.align_a,
                                                            sizeof(key.align_a)));
    FERRY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.align_b,
                                                            sizeof(key.align_b)));
    FERRY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.align_c,
                                                            sizeof(key.align_c)));
    FERRY_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.align_c,
                                                            sizeof(key.align_c)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    FERRY_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_handle(), desc, layouts.a.get(), layouts.b.get(),
                                                      layouts.c.get(), layouts.c.get(), p, 1, &result, &found));
    if (found == 0)
      fail(ErrorCategory::UNSUPPORTED, "dequant_gemm: cuBLASLt has no FP16 GEMM for m = " + std::to_string(key.m) +
                                           ", n = " + std::to_string(key.tc) + ", k = " + std::to_string(key.k));
    return result.algo;
  }

  std::mutex m_mutex;
  std::map<AlgoKey, cublasLtMatmulAlgo_t> m_algos;
};

AlgoCache& algo_cache() {
  static AlgoCache cache;
  return cache;
}

int64_t min_tile_rows(const QuantMatrixView& w) { return std::min<int64_t>(w.n_rows, kGemmTileRowMultiple); }

}  // namespace

size_t gemm_min_weight_scratch(const QuantMatrixView& w) noexcept { return device_sizing::gemm_min_weight_scratch(w); }

void dequant_gemm(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, const GemmScratch& scratch,
                  cublasHandle_t /*cublas*/, cudaStream_t stream) {
  const std::string name(type_name(w.type));
  const std::string shape = name + " [" + std::to_string(w.n_rows) + " x " + std::to_string(w.n_cols) + "]";
  if (!can_dequantize(w.type))
    fail(ErrorCategory::UNSUPPORTED, "dequant_gemm: GGML type " + name + " cannot be dequantized on the GPU");
  if (n_tokens < 1 || w.n_rows < 0 || w.n_cols <= 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "dequant_gemm " + shape + ": bad shape with " + std::to_string(n_tokens) + " tokens");
  const int64_t row_bytes = static_cast<int64_t>(ferry::row_bytes(w.type, w.n_cols));  // checks the block multiple
  if (w.n_rows == 0) return;
  if (w.data == nullptr || x == nullptr || y == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "dequant_gemm " + shape + ": a weight, input or output pointer is null");
  const size_t min_weight = gemm_min_weight_scratch(w);
  if (scratch.weight == nullptr || scratch.weight_elems < min_weight)
    fail(ErrorCategory::BUDGET, "dequant_gemm " + shape + ": weight scratch holds " +
                                    std::to_string(scratch.weight == nullptr ? 0 : scratch.weight_elems) +
                                    " halves, one tile of " + std::to_string(min_tile_rows(w)) + " rows needs " +
                                    std::to_string(min_weight));
  const size_t act = device_sizing::gemm_min_activation_scratch(w, n_tokens);
  if (scratch.activations == nullptr || scratch.activation_elems < act)
    fail(ErrorCategory::BUDGET, "dequant_gemm " + shape + ": activation scratch holds " +
                                    std::to_string(scratch.activations == nullptr ? 0 : scratch.activation_elems) +
                                    " halves, a chunk of " + std::to_string(std::min(n_tokens, device_sizing::kGemmMinTokenChunk)) +
                                    " of " + std::to_string(n_tokens) + " tokens needs " + std::to_string(act));

  const int64_t n = w.n_rows, k = w.n_cols, t = n_tokens;
  int64_t tile = static_cast<int64_t>(scratch.weight_elems / static_cast<size_t>(k));
  tile = tile >= n ? n : tile / kGemmTileRowMultiple * kGemmTileRowMultiple;

  const int64_t chunk = device_sizing::gemm_token_chunk(t, k, scratch.activation_elems);
  if (chunk >= t) detail::convert_f32_to_fp16(x, scratch.activations, t * k, stream);  // once for every tile
  cublasLtHandle_t lt = lt_handle();
  const MatmulDesc desc = make_desc();
  int device = 0;
  FERRY_CUDA_CHECK(cudaGetDevice(&device));
  AlgoKey key{device,
              n,
              t,
              k,
              n,
              t,
              scratch.workspace_bytes,
              alignment_of(scratch.weight),
              alignment_of(scratch.activations),
              alignment_of(y)};
  const float alpha = 1.0f, beta = 0.0f;
  const auto* wbytes = static_cast<const uint8_t*>(w.data);
  // A split-K algorithm's reduce kernel reads the partial sums its GEMM kernel left in the workspace: stores initcheck
  // does not see (test_offload_gpu: 200000 reports inside cuBLASLt's splitKreduce_kernel). Once marked, it stays so.
  detail::mark_written_for_tools(scratch.workspace, scratch.workspace_bytes, stream);
  for (int64_t r0 = 0; r0 < n; r0 += tile) {
    const int64_t m = std::min(tile, n - r0);
    if (scratch.fp32_tile != nullptr)
      dequantize_fp16_via_fp32(w.type, wbytes + r0 * row_bytes, scratch.fp32_tile, scratch.weight, m * k, stream);
    else
      dequantize_fp16(w.type, wbytes + r0 * row_bytes, scratch.weight, m * k, stream);
    for (int64_t t0 = 0; t0 < t; t0 += chunk) {
      const int64_t tc = std::min(chunk, t - t0);
      if (chunk < t) detail::convert_f32_to_fp16(x + t0 * k, scratch.activations, tc * k, stream);
      const Layouts layouts(m, tc, k, n);
      float* out = y + t0 * n + r0;
      key.m = m;
      key.tc = tc;
      key.align_c = alignment_of(out);
      const cublasLtMatmulAlgo_t algo = algo_cache().get(key, desc.get(), layouts);
      FERRY_CUBLAS_CHECK(cublasLtMatmul(lt, desc.get(), &alpha, scratch.weight, layouts.a.get(), scratch.activations,
                                        layouts.b.get(), &beta, out, layouts.c.get(), out, layouts.c.get(), &algo,
                                        scratch.workspace, scratch.workspace_bytes, stream));
    }
  }
  // The tiles and token chunks above cover y[0:T, 0:N] exactly once.
  detail::mark_written_for_tools(y, static_cast<size_t>(t * n) * sizeof(float), stream);
}

bool matmul_uses_gemv(const QuantMatrixView& w, int64_t n_tokens) noexcept {
  return device_sizing::matmul_uses_gemv(w, n_tokens);
}

void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y, const GemmScratch& scratch,
            cublasHandle_t cublas, cudaStream_t stream) {
  if (matmul_uses_gemv(w, n_tokens)) {
    quant_gemv(w, x, n_tokens, y, stream);
    return;
  }
  dequant_gemm(w, x, n_tokens, y, scratch, cublas, stream);
}

void matmul_batch(std::span<const QuantMatrixView> ws, const float* x, int64_t n_tokens, std::span<float* const> ys,
                  const GemmScratch& scratch, cublasHandle_t cublas, cudaStream_t stream) {
  if (ws.size() != ys.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "matmul_batch: " + std::to_string(ws.size()) + " matrices but " + std::to_string(ys.size()) + " outputs");
  const bool gemv =
      std::all_of(ws.begin(), ws.end(), [&](const QuantMatrixView& w) { return matmul_uses_gemv(w, n_tokens); });
  if (gemv) {
    quant_gemv_batch(ws, x, n_tokens, ys, stream);
    return;
  }
  for (size_t i = 0; i < ws.size(); ++i) matmul(ws[i], x, n_tokens, ys[i], scratch, cublas, stream);
}

}  // namespace ferry::cuda
