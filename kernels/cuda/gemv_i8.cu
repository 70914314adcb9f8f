// Dispatch of the int8-activation GEMV (kernel and design: gemv_i8_kernel.cuh) to its per-family instantiations, and
// its fused form (GemvFusion; the public entry point is quant_gemv_fused in gemv.cu).
#include "gemv_i8_kernel.cuh"

namespace ferry::cuda {
namespace detail {

// Instantiated in gemv_i8_legacy.cu and gemv_i8_kquants.cu.
extern template void launch_gemv_i8_type<GgmlType::Q4_0>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);
extern template void launch_gemv_i8_type<GgmlType::Q4_1>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);
extern template void launch_gemv_i8_type<GgmlType::Q8_0>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);
extern template void launch_gemv_i8_type<GgmlType::Q4_K>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);
extern template void launch_gemv_i8_type<GgmlType::Q5_K>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);
extern template void launch_gemv_i8_type<GgmlType::Q6_K>(std::span<const QuantMatrixView>, int64_t, const float*, int,
                                                         std::span<float* const>, const GemvFusion&, cudaStream_t);

bool gemv_i8_supported(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q8_0:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
      return true;
    default:
      return false;
  }
}

bool launch_gemv_i8_fused(std::span<const QuantMatrixView> ws, int64_t row_bytes, const float* x, int n_tok,
                          std::span<float* const> ys, const GemvFusion& fusion, cudaStream_t stream) {
  if (ws.empty() || ws.size() > static_cast<size_t>(kGemvBatchMax) || ys.size() != ws.size()) return false;
  switch (ws[0].type) {
    case GgmlType::Q4_0:
      launch_gemv_i8_type<GgmlType::Q4_0>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    case GgmlType::Q4_1:
      launch_gemv_i8_type<GgmlType::Q4_1>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    case GgmlType::Q8_0:
      launch_gemv_i8_type<GgmlType::Q8_0>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    case GgmlType::Q4_K:
      launch_gemv_i8_type<GgmlType::Q4_K>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    case GgmlType::Q5_K:
      launch_gemv_i8_type<GgmlType::Q5_K>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    case GgmlType::Q6_K:
      launch_gemv_i8_type<GgmlType::Q6_K>(ws, row_bytes, x, n_tok, ys, fusion, stream);
      return true;
    default:
      return false;
  }
}

bool launch_gemv_i8_batch(std::span<const QuantMatrixView> ws, int64_t row_bytes, const float* x, int n_tok,
                          std::span<float* const> ys, cudaStream_t stream) {
  // Q4_1 and Q5_K have int8 units too, but plain products keep their FP32 decode until those units have run on a GPU:
  // only quant_gemv_fused (FERRY_FUSED_OPS=on, off by default) takes them.
  if (ws.empty() || ws[0].type == GgmlType::Q4_1 || ws[0].type == GgmlType::Q5_K) return false;
  return launch_gemv_i8_fused(ws, row_bytes, x, n_tok, ys, GemvFusion{}, stream);
}

bool launch_gemv_i8(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                    cudaStream_t stream) {
  return launch_gemv_i8_batch(std::span<const QuantMatrixView>(&w, 1), row_bytes, x, n_tok,
                              std::span<float* const>(&y, 1), stream);
}

}  // namespace detail
}  // namespace ferry::cuda
