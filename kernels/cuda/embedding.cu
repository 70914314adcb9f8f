// Embedding lookup straight from quantized rows on the GPU.
//
// Roofline: a lookup reads n_tokens rows of the table (~0.56 B per element in Q4_0) and writes 4 B per element: a few
// microseconds for a prompt, nothing next to one layer. So the kernel favours simplicity: one thread per output element
// decodes its own value from its block (the block's scales are re-read by the threads sharing it, from L1).
// Technique: the token ids live on the device, so the rows to read are only known there; a per-element decoder for each
// GGML type (templated, dispatched once per call) avoids both a host round trip for the ids and any FP16 temporary.
// Exactness: each decoder repeats the reference's operation order (kernels/ref/quants_dequantize.cpp) with explicitly
// rounded multiplies and adds (__fmul_rn and friends, which nvcc never fuses into an FMA), so the output equals
// ref::dequantize bit for bit.
#include "ferry/kernels/cuda/embedding.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "../cpu/op_checks.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/dequant.cuh"

namespace ferry::cuda {
namespace {

__constant__ int8_t c_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

constexpr int kThreads = 256;
constexpr int64_t kColsPerBlock = 2048;  // columns one block decodes for one token (grid.y covers wide rows)

__device__ __forceinline__ float h2f(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// The j-th (0..31) 4-bit value of a 32-element block in Q4_0 order: byte j low nibble, then byte j - 16 high nibble.
__device__ __forceinline__ int nibble32(const uint8_t* qs, int j) { return j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4); }

template <GgmlType kType>
__device__ float decode(const uint8_t* row, int64_t e) {
  if constexpr (kType == GgmlType::F32) {
    return reinterpret_cast<const float*>(row)[e];
  } else if constexpr (kType == GgmlType::F16) {
    return h2f(reinterpret_cast<const uint16_t*>(row)[e]);
  } else if constexpr (kType == GgmlType::BF16) {
    return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[e]) << 16);
  } else if constexpr (kType == GgmlType::Q4_0) {
    const BlockQ4_0& b = reinterpret_cast<const BlockQ4_0*>(row)[e / kQK4];
    return __fmul_rn(h2f(b.d), static_cast<float>(nibble32(b.qs, static_cast<int>(e % kQK4)) - 8));
  } else if constexpr (kType == GgmlType::Q4_1) {
    const BlockQ4_1& b = reinterpret_cast<const BlockQ4_1*>(row)[e / kQK4];
    return __fadd_rn(__fmul_rn(h2f(b.d), static_cast<float>(nibble32(b.qs, static_cast<int>(e % kQK4)))), h2f(b.m));
  } else if constexpr (kType == GgmlType::Q5_0 || kType == GgmlType::Q5_1) {
    using Block = std::conditional_t<kType == GgmlType::Q5_0, BlockQ5_0, BlockQ5_1>;
    const Block& b = reinterpret_cast<const Block*>(row)[e / kQK4];
    const int j = static_cast<int>(e % kQK4);
    // Element j's fifth bit is bit j of the little-endian u32 qh (for both halves of the block).
    const int q = nibble32(b.qs, j) | (((b.qh[j / 8] >> (j % 8)) & 1) << 4);
    if constexpr (kType == GgmlType::Q5_0)
      return __fmul_rn(h2f(b.d), static_cast<float>(q - 16));
    else
      return __fadd_rn(__fmul_rn(h2f(b.d), static_cast<float>(q)), h2f(b.m));
  } else if constexpr (kType == GgmlType::Q8_0) {
    const BlockQ8_0& b = reinterpret_cast<const BlockQ8_0*>(row)[e / kQK4];
    return __fmul_rn(h2f(b.d), static_cast<float>(b.qs[e % kQK4]));
  } else if constexpr (kType == GgmlType::IQ4_NL) {
    const BlockIQ4_NL& b = reinterpret_cast<const BlockIQ4_NL*>(row)[e / kQK4];
    return __fmul_rn(h2f(b.d), static_cast<float>(c_iq4nl_values[nibble32(b.qs, static_cast<int>(e % kQK4))]));
  } else {
    // Super-block types: e is split into the element within the 256-block.
    const int i = static_cast<int>(e % kQKK);
    if constexpr (kType == GgmlType::Q2_K) {
      const BlockQ2_K& b = reinterpret_cast<const BlockQ2_K*>(row)[e / kQKK];
      const int h = i / 128, j = (i % 128) / 32, l = i % 32;
      const uint8_t s = b.scales[i / 16];
      const float dl = __fmul_rn(h2f(b.d), static_cast<float>(s & 15));
      const float ml = __fmul_rn(h2f(b.dmin), static_cast<float>(s >> 4));
      const int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
      return __fsub_rn(__fmul_rn(dl, static_cast<float>(q)), ml);
    } else if constexpr (kType == GgmlType::Q3_K) {
      const BlockQ3_K& b = reinterpret_cast<const BlockQ3_K*>(row)[e / kQKK];
      const int h = i / 128, j = (i % 128) / 32, l = i % 32;
      const float dl = __fmul_rn(h2f(b.d), static_cast<float>(q3_k_scale(i / 16, b.scales) - 32));
      const int low = (b.qs[32 * h + l] >> (2 * j)) & 3;
      const int high = (b.hmask[l] >> (4 * h + j)) & 1;
      return __fmul_rn(dl, static_cast<float>(low - (high ? 0 : 4)));
    } else if constexpr (kType == GgmlType::Q4_K || kType == GgmlType::Q5_K) {
      using Block = std::conditional_t<kType == GgmlType::Q4_K, BlockQ4_K, BlockQ5_K>;
      const Block& b = reinterpret_cast<const Block*>(row)[e / kQKK];
      const int g = i / 32, l = i % 32;
      uint8_t sc = 0, m = 0;
      k4_scale_min(g, b.scales, &sc, &m);
      const float dl = __fmul_rn(h2f(b.d), static_cast<float>(sc));
      const float ml = __fmul_rn(h2f(b.dmin), static_cast<float>(m));
      int q = (b.qs[32 * (g / 2) + l] >> (4 * (g % 2))) & 15;
      if constexpr (kType == GgmlType::Q5_K) q |= ((b.qh[l] >> g) & 1) << 4;
      return __fsub_rn(__fmul_rn(dl, static_cast<float>(q)), ml);
    } else if constexpr (kType == GgmlType::Q6_K) {
      const BlockQ6_K& b = reinterpret_cast<const BlockQ6_K*>(row)[e / kQKK];
      const int h = i / 128, k = (i % 128) / 32, l = i % 32;
      const float dl = __fmul_rn(h2f(b.d), static_cast<float>(b.scales[i / 16]));
      const int low = (b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
      const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
      return __fmul_rn(dl, static_cast<float>((low | (high << 4)) - 32));
    } else {
      static_assert(kType == GgmlType::IQ4_XS, "no decoder for this type");
      const BlockIQ4_XS& b = reinterpret_cast<const BlockIQ4_XS*>(row)[e / kQKK];
      const int g = i / 32, j = i % 32;
      const float dl = __fmul_rn(h2f(b.d), static_cast<float>(iq4_xs_scale(g, b) - 32));
      const uint8_t q = b.qs[16 * g + j % 16];
      return __fmul_rn(dl, static_cast<float>(c_iq4nl_values[j < 16 ? (q & 15) : (q >> 4)]));
    }
  }
}

template <GgmlType kType>
__global__ void embedding_kernel(const uint8_t* table, uint64_t row_bytes, int64_t n_rows, int64_t n_cols,
                                 const int32_t* ids, int64_t n_tokens, float* out) {
  const int64_t col_begin = static_cast<int64_t>(blockIdx.y) * kColsPerBlock;
  const int64_t col_end = min(col_begin + kColsPerBlock, n_cols);
  for (int64_t t = blockIdx.x; t < n_tokens; t += gridDim.x) {
    const int32_t id = ids[t];
    float* o = out + t * n_cols;
    if (id < 0 || id >= n_rows) {
      for (int64_t e = col_begin + threadIdx.x; e < col_end; e += blockDim.x) o[e] = __int_as_float(0x7fc00000);
      continue;
    }
    const uint8_t* row = table + static_cast<uint64_t>(id) * row_bytes;
    for (int64_t e = col_begin + threadIdx.x; e < col_end; e += blockDim.x) o[e] = decode<kType>(row, e);
  }
}

}  // namespace

bool embedding_supported(GgmlType type) noexcept {
  return can_dequantize(type);  // the same type set: every type with a block layout (its own row decoder below)
}

void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out,
                      cudaStream_t stream) {
  // Type known and dequantizable, n_cols a positive multiple of the block size, pointers present (ids stay on the
  // device: their range is handled in the kernel, see the header).
  ferry::detail::check_matmul("cuda::embedding_lookup", table, ids, n_tokens, out);
  if (!embedding_supported(table.type))
    fail(ErrorCategory::UNSUPPORTED,
         "cuda::embedding_lookup: no GPU decoder for type " + std::string(type_name(table.type)));
  if (n_tokens == 0) return;
  const uintptr_t need = table.type == GgmlType::F32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(table.data) % need != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "cuda::embedding_lookup: " + std::string(type_name(table.type)) +
                                              " table data is not " + std::to_string(need) + "-byte aligned");
  const uint64_t rb = row_bytes(table.type, table.n_cols);
  const auto* base = static_cast<const uint8_t*>(table.data);
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(n_tokens, 65535)),
                  static_cast<unsigned>((table.n_cols + kColsPerBlock - 1) / kColsPerBlock));
#define FERRY_EMBED_CASE(T)                                                                        \
  case GgmlType::T:                                                                                \
    embedding_kernel<GgmlType::T>                                                                  \
        <<<grid, kThreads, 0, stream>>>(base, rb, table.n_rows, table.n_cols, ids, n_tokens, out); \
    break;
  switch (table.type) {
    FERRY_EMBED_CASE(F32)
    FERRY_EMBED_CASE(F16)
    FERRY_EMBED_CASE(BF16)
    FERRY_EMBED_CASE(Q4_0)
    FERRY_EMBED_CASE(Q4_1)
    FERRY_EMBED_CASE(Q5_0)
    FERRY_EMBED_CASE(Q5_1)
    FERRY_EMBED_CASE(Q8_0)
    FERRY_EMBED_CASE(Q2_K)
    FERRY_EMBED_CASE(Q3_K)
    FERRY_EMBED_CASE(Q4_K)
    FERRY_EMBED_CASE(Q5_K)
    FERRY_EMBED_CASE(Q6_K)
    FERRY_EMBED_CASE(IQ4_NL)
    FERRY_EMBED_CASE(IQ4_XS)
    default:
      break;
  }
#undef FERRY_EMBED_CASE
  FERRY_CUDA_CHECK_LAUNCH();
}

}  // namespace ferry::cuda
