// GEMV instantiations for the 32-element block types (gemv_kernel.cuh; design note in gemv.cu).
#include "gemv_kernel.cuh"

namespace ferry::cuda::detail {

bool launch_gemv_q32(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                     cudaStream_t stream) {
  switch (w.type) {
    case GgmlType::Q4_0:
      launch_quant_gemv<GgmlType::Q4_0>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q4_1:
      launch_quant_gemv<GgmlType::Q4_1>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q5_0:
      launch_quant_gemv<GgmlType::Q5_0>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q5_1:
      launch_quant_gemv<GgmlType::Q5_1>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q8_0:
      launch_quant_gemv<GgmlType::Q8_0>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::IQ4_NL:
      launch_quant_gemv<GgmlType::IQ4_NL>(w, row_bytes, x, n_tok, y, stream);
      return true;
    default:
      return false;
  }
}

}  // namespace ferry::cuda::detail
