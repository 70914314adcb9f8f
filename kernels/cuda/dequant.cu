// GPU dequantization straight to FP16 / BF16.
//
// Roofline. Dequantization does no arithmetic worth counting; it moves bytes. Per element it reads the quantized
// bytes (Q4_0: 18/32 = 0.56 B, Q8_0: 1.06 B, Q4_K: 0.56 B, Q6_K: 0.82 B) and writes 2 B of FP16, so the ideal time is
// (bytes in + bytes out) / device copy bandwidth, copy bandwidth counted the same way (bytes read + bytes written by a
// device-to-device cudaMemcpy; ~2.9 TB/s on an H100). Output dominates: 78% of the traffic for Q4_0. The old path
// (dequantize to an FP32 temporary, then cast) moves 0.56 + 4 + 4 + 2 = 10.6 B per Q4_0 element instead of 2.6 B:
// 4x the traffic plus 4 B per element of scratch. It is kept only for the benchmark (dequant_via_fp32.cu).
//
// Technique.
// - One CTA of 256 threads per tile of 4096 elements. The tile's blocks are contiguous bytes (Q4_0: 128 blocks =
//   2304 B; Q6_K: 16 blocks = 3360 B), a multiple of 16 B for every type, so the CTA stages them in shared memory
//   with coalesced 16-byte loads even though 18-, 34- and 210-byte blocks are only 2-byte aligned.
// - Thread t then decodes 8-element chunks t and t + 256 from shared memory into registers (float) and writes each
//   chunk as one 16-byte store of 8 halves: consecutive threads write consecutive 16 B, fully coalesced. No FP32
//   array exists anywhere; the floats live in registers only.
// - Quant-to-float conversion avoids I2F (quarter rate): a byte b becomes the float 2^23 + b by bit operations.
//   The IQ4 codebook is read with PRMT from constants, not from memory.
// - Source loads are streaming (__ldcs): the quantized bytes are read once. Stores are normal so that a tile written
//   for the GEMM path can still be in L2 when cuBLAS reads it.
//
// Invariants.
// - n is a multiple of the block size (checked); src is at least 2-byte aligned (every GGUF field is), dst at least
//   2-byte aligned. Misaligned src or dst are handled by narrower loads / element stores, not rejected.
// - Values are bit-identical to ferry::ref::dequantize rounded to nearest even (block_decode.cuh says how): the tests
//   compare FP16 output to fp32_to_fp16(reference) exactly, BF16 to fp32_to_bf16(reference).
// - Everything is enqueued on the caller's stream; nothing synchronises, nothing allocates.
#include <string>

#include "dequant_kernels.cuh"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/dequant.cuh"
#include "ferry/kernels/device_sizing.hpp"

namespace ferry::cuda {

namespace detail {

void check_dequant_args(GgmlType type, int64_t n, const char* what) {
  const TypeTraits& t = type_traits(type);
  if (!can_dequantize(type))
    fail(ErrorCategory::UNSUPPORTED, std::string(what) + ": GGML type " + std::string(t.name) + " (id " +
                                         std::to_string(static_cast<uint32_t>(type)) +
                                         ") has no GPU dequantization kernel");
  if (n < 0 || n % t.block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, std::string(what) + " " + std::string(t.name) + ": " + std::to_string(n) +
                                              " elements is not a multiple of the block size " +
                                              std::to_string(t.block_size));
}

void convert_f32_to_fp16(const float* src, __half* dst, int64_t n, cudaStream_t stream) {
  launch_convert<float, __half>(src, dst, n, stream);
}

void check_source_alignment(GgmlType type, const void* src, const char* what) {
  const uintptr_t need = type == GgmlType::F32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(src) % need != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, std::string(what) + " " + std::string(type_name(type)) + ": source is not " +
                                              std::to_string(need) + "-byte aligned");
}

namespace {

template <class Out>
void dequantize_to(GgmlType type, const void* src, Out* dst, int64_t n, cudaStream_t stream, const char* what) {
  check_dequant_args(type, n, what);
  check_source_alignment(type, src, what);
  if (n == 0) return;
  const bool done =
      dispatch_block_type(type, [&]<GgmlType kType>() { launch_dequant_blocks<kType, Out>(src, dst, n, stream); });
  if (done) return;
  constexpr bool kToHalf = std::is_same_v<Out, __half>;
  switch (type) {
    case GgmlType::F32:
      launch_convert<float, Out>(src, dst, n, stream);
      return;
    case GgmlType::F16:
      if constexpr (kToHalf) {
        FERRY_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * 2, cudaMemcpyDeviceToDevice, stream));
      } else {
        launch_convert<__half, Out>(src, dst, n, stream);
      }
      return;
    case GgmlType::BF16:
      if constexpr (!kToHalf) {
        FERRY_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * 2, cudaMemcpyDeviceToDevice, stream));
      } else {
        launch_convert<__nv_bfloat16, Out>(src, dst, n, stream);
      }
      return;
    default:
      break;
  }
  fail(ErrorCategory::INTERNAL, std::string(what) + ": no kernel for " + std::string(type_name(type)));
}

}  // namespace
}  // namespace detail

bool can_dequantize(GgmlType type) noexcept { return device_sizing::gpu_can_dequantize(type); }

void dequantize_fp16(GgmlType type, const void* src, __half* dst, int64_t n, cudaStream_t stream) {
  detail::dequantize_to(type, src, dst, n, stream, "dequantize_fp16");
}

void dequantize_bf16(GgmlType type, const void* src, __nv_bfloat16* dst, int64_t n, cudaStream_t stream) {
  detail::dequantize_to(type, src, dst, n, stream, "dequantize_bf16");
}

}  // namespace ferry::cuda
