// GEMV instantiations for unquantized weights (gemv_kernel.cuh; design note in gemv.cu).
#include "gemv_kernel.cuh"

namespace ferry::cuda::detail {

bool launch_gemv_float(const QuantMatrixView& w, int64_t row_bytes, const float* x, int n_tok, float* y,
                       cudaStream_t stream) {
  switch (w.type) {
    case GgmlType::F16: launch_quant_gemv<GgmlType::F16>(w, row_bytes, x, n_tok, y, stream); return true;
    case GgmlType::BF16: launch_quant_gemv<GgmlType::BF16>(w, row_bytes, x, n_tok, y, stream); return true;
    case GgmlType::F32: launch_quant_gemv<GgmlType::F32>(w, row_bytes, x, n_tok, y, stream); return true;
    default: return false;
  }
}

}  // namespace ferry::cuda::detail
