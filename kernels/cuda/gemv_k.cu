// GEMV instantiations for the 256-element super-block types (gemv_kernel.cuh; design note in gemv.cu).
#include "gemv_kernel.cuh"

namespace ferry::cuda::detail {

bool launch_gemv_k(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                   cudaStream_t stream) {
  switch (w.type) {
    case GgmlType::Q2_K:
      launch_quant_gemv<GgmlType::Q2_K>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q3_K:
      launch_quant_gemv<GgmlType::Q3_K>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q4_K:
      launch_quant_gemv<GgmlType::Q4_K>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q5_K:
      launch_quant_gemv<GgmlType::Q5_K>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::Q6_K:
      launch_quant_gemv<GgmlType::Q6_K>(w, row_bytes, x, n_tok, y, stream);
      return true;
    case GgmlType::IQ4_XS:
      launch_quant_gemv<GgmlType::IQ4_XS>(w, row_bytes, x, n_tok, y, stream);
      return true;
    default:
      return false;
  }
}

}  // namespace ferry::cuda::detail
