// The int8-activation GEMV's instantiations for the 32-element block types (gemv_i8_kernel.cuh).
#include "gemv_i8_kernel.cuh"

namespace ferry::cuda::detail {

FERRY_GEMV_I8_INSTANTIATE(Q4_0);
FERRY_GEMV_I8_INSTANTIATE(Q4_1);
FERRY_GEMV_I8_INSTANTIATE(Q8_0);

}  // namespace ferry::cuda::detail
