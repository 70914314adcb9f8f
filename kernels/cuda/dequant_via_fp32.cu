// The benchmark's comparison path: dequantize to an FP32 temporary, then cast to FP16 in a second kernel. This is
// what ferry did before the direct kernels (dequant.cu) and what they are measured against; no runtime path uses it.
// It shares the decoders, so its values are the same; only the traffic differs (4 B per element written and read
// again through the temporary).
#include "dequant_kernels.cuh"
#include "ferry/kernels/cuda/dequant.cuh"

namespace ferry::cuda {

void dequantize_fp16_via_fp32(GgmlType type, const void* src, float* tmp, __half* dst, int64_t n, cudaStream_t stream) {
  detail::check_dequant_args(type, n, "dequantize_fp16_via_fp32");
  detail::check_source_alignment(type, src, "dequantize_fp16_via_fp32");
  if (n == 0) return;
  const bool done = detail::dispatch_block_type(
      type, [&]<GgmlType kType>() { detail::launch_dequant_blocks<kType, float>(src, tmp, n, stream); });
  if (!done) {
    switch (type) {
      case GgmlType::F32:
        FERRY_CUDA_CHECK(cudaMemcpyAsync(tmp, src, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToDevice, stream));
        break;
      case GgmlType::F16:
        detail::launch_convert<__half, float>(src, tmp, n, stream);
        break;
      case GgmlType::BF16:
        detail::launch_convert<__nv_bfloat16, float>(src, tmp, n, stream);
        break;
      default:
        fail(ErrorCategory::INTERNAL, "dequantize_fp16_via_fp32: no kernel for " + std::string(type_name(type)));
    }
  }
  detail::launch_convert<float, __half>(tmp, dst, n, stream);
}

}  // namespace ferry::cuda
