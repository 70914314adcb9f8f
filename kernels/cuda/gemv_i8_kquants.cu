// The int8-activation GEMV's instantiations for the 256-element super-block types (gemv_i8_kernel.cuh).
#include "gemv_i8_kernel.cuh"

namespace ferry::cuda::detail {

FERRY_GEMV_I8_INSTANTIATE(Q4_K);
FERRY_GEMV_I8_INSTANTIATE(Q5_K);
FERRY_GEMV_I8_INSTANTIATE(Q6_K);

}  // namespace ferry::cuda::detail
