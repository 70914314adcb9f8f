// The dequantization kernel templates (design note: dequant.cu). Instantiated for FP16 and BF16 output in dequant.cu
// and for FP32 output (the benchmark's cast path) in dequant_via_fp32.cu, so each translation unit stays small.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "block_decode.cuh"
#include "ferry/kernels/cuda/check.cuh"

namespace ferry::cuda::detail {

inline constexpr int kDequantThreads = 256;
inline constexpr int kDequantChunksPerThread = 2;                                        // chunks of 8 elements
inline constexpr int kDequantTileElems = kDequantThreads * kDequantChunksPerThread * 8;  // 4096

// ---- output stores: 8 values, one 16-byte store when the destination allows it ----------------------------------
__device__ __forceinline__ uint32_t pack2(__half2 h) { return *reinterpret_cast<uint32_t*>(&h); }
__device__ __forceinline__ uint32_t pack2(__nv_bfloat162 h) { return *reinterpret_cast<uint32_t*>(&h); }

template <class Out>
struct Store8;

template <>
struct Store8<__half> {
  static __device__ __forceinline__ void store(__half* dst, const float* v, bool vec) {
    if (vec) {
      uint4 u;
      u.x = pack2(__floats2half2_rn(v[0], v[1]));
      u.y = pack2(__floats2half2_rn(v[2], v[3]));
      u.z = pack2(__floats2half2_rn(v[4], v[5]));
      u.w = pack2(__floats2half2_rn(v[6], v[7]));
      *reinterpret_cast<uint4*>(dst) = u;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[i] = __float2half_rn(v[i]);
    }
  }
};

template <>
struct Store8<__nv_bfloat16> {
  static __device__ __forceinline__ void store(__nv_bfloat16* dst, const float* v, bool vec) {
    if (vec) {
      uint4 u;
      u.x = pack2(__floats2bfloat162_rn(v[0], v[1]));
      u.y = pack2(__floats2bfloat162_rn(v[2], v[3]));
      u.z = pack2(__floats2bfloat162_rn(v[4], v[5]));
      u.w = pack2(__floats2bfloat162_rn(v[6], v[7]));
      *reinterpret_cast<uint4*>(dst) = u;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[i] = __float2bfloat16_rn(v[i]);
    }
  }
};

template <>
struct Store8<float> {
  static __device__ __forceinline__ void store(float* dst, const float* v, bool vec) {
    if (vec) {
      reinterpret_cast<float4*>(dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[i] = v[i];
    }
  }
};

// Cooperative copy of n bytes (n even) from global to a 16-byte-aligned shared buffer with the widest loads the
// source alignment allows. Every tile but the last of a 16-byte-aligned tensor takes the uint4 path: a tile is
// 4096 elements, whose byte size is a multiple of 16 for every block type.
__device__ __forceinline__ void copy_to_shared(const uint8_t* __restrict__ g, uint8_t* s, int n) {
  const auto addr = reinterpret_cast<uintptr_t>(g);
  if ((addr & 15u) == 0 && (n & 15) == 0) {
    const uint4* src = reinterpret_cast<const uint4*>(g);
    uint4* dst = reinterpret_cast<uint4*>(s);
    for (int i = threadIdx.x; i < n / 16; i += blockDim.x) dst[i] = __ldcs(src + i);
  } else if ((addr & 3u) == 0 && (n & 3) == 0) {
    const uint32_t* src = reinterpret_cast<const uint32_t*>(g);
    uint32_t* dst = reinterpret_cast<uint32_t*>(s);
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) dst[i] = __ldcs(reinterpret_cast<const unsigned*>(src + i));
  } else {
    const uint16_t* src = reinterpret_cast<const uint16_t*>(g);
    uint16_t* dst = reinterpret_cast<uint16_t*>(s);
    for (int i = threadIdx.x; i < n / 2; i += blockDim.x)
      dst[i] = __ldcs(reinterpret_cast<const unsigned short*>(src + i));
  }
}

// One CTA per tile of kDequantTileElems elements: stage the tile's blocks in shared memory with coalesced loads,
// then thread t decodes chunks t, t + 256 (8 elements each) and stores each as one 16-byte vector, so consecutive
// threads write consecutive 16-byte pieces.
template <GgmlType kType, class Out>
__global__ void __launch_bounds__(kDequantThreads)
    dequant_blocks_kernel(const uint8_t* __restrict__ src, Out* __restrict__ dst, int64_t n_blocks, bool dst_vec) {
  using Dec = BlockDecoder<kType>;
  constexpr int kBlocksPerTile = kDequantTileElems / Dec::kElems;
  constexpr int kChunksPerBlock = Dec::kElems / 8;
  __shared__ __align__(16) uint8_t tile[kBlocksPerTile * Dec::kBytes];

  const int64_t block0 = static_cast<int64_t>(blockIdx.x) * kBlocksPerTile;
  const int nb = static_cast<int>(min(static_cast<int64_t>(kBlocksPerTile), n_blocks - block0));
  copy_to_shared(src + block0 * Dec::kBytes, tile, nb * Dec::kBytes);
  __syncthreads();

  Out* out = dst + block0 * Dec::kElems;
#pragma unroll
  for (int k = 0; k < kDequantChunksPerThread; ++k) {
    const int c = threadIdx.x + k * kDequantThreads;
    const int blk = c / kChunksPerBlock;
    if (blk < nb) {
      float v[8];
      Dec::decode8(tile + blk * Dec::kBytes, c % kChunksPerBlock, v);
      Store8<Out>::store(out + 8 * c, v, dst_vec);
    }
  }
}

// ---- F32 / F16 / BF16 sources: elementwise conversion, 8 elements per thread --------------------------------------
template <class Src>
struct Load8;

template <>
struct Load8<float> {
  static __device__ __forceinline__ void load(const float* p, float* v, bool vec) {
    if (vec) {
      const float4 a = __ldcs(reinterpret_cast<const float4*>(p));
      const float4 b = __ldcs(reinterpret_cast<const float4*>(p) + 1);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = p[i];
    }
  }
  static __device__ __forceinline__ float load1(const float* p) { return *p; }
};

template <class Half>
struct Load8Half {
  static __device__ __forceinline__ float to_float(uint32_t bits) {
    if constexpr (std::is_same_v<Half, __half>) {
      return half_bits_to_float(bits);
    } else {
      return bf16_bits_to_float(bits);
    }
  }
  static __device__ __forceinline__ void load(const Half* p, float* v, bool vec) {
    if (vec) {
      const uint4 u = __ldcs(reinterpret_cast<const uint4*>(p));
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        v[2 * i] = to_float(w[i]);
        v[2 * i + 1] = to_float(w[i] >> 16);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = load1(p + i);
    }
  }
  static __device__ __forceinline__ float load1(const Half* p) {
    return to_float(*reinterpret_cast<const unsigned short*>(p));
  }
};
template <>
struct Load8<__half> : Load8Half<__half> {};
template <>
struct Load8<__nv_bfloat16> : Load8Half<__nv_bfloat16> {};

template <class Out>
__device__ __forceinline__ Out convert_one(float v);
template <>
__device__ __forceinline__ __half convert_one<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 convert_one<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ float convert_one<float>(float v) {
  return v;
}

// `vec`: both pointers 16-byte aligned, so full groups of 8 use vector loads and stores.
template <class Src, class Out>
__global__ void __launch_bounds__(kDequantThreads)
    convert_kernel(const Src* __restrict__ src, Out* __restrict__ dst, int64_t n, bool vec) {
  const int64_t i0 = (static_cast<int64_t>(blockIdx.x) * kDequantThreads + threadIdx.x) * 8;
  if (i0 + 8 <= n) {
    float v[8];
    Load8<Src>::load(src + i0, v, vec);
    Store8<Out>::store(dst + i0, v, vec);
  } else {
    for (int64_t i = i0; i < n; ++i) dst[i] = convert_one<Out>(Load8<Src>::load1(src + i));
  }
}

inline bool is_aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <GgmlType kType, class Out>
void launch_dequant_blocks(const void* src, Out* dst, int64_t n, cudaStream_t stream) {
  using Dec = BlockDecoder<kType>;
  const int64_t n_blocks = n / Dec::kElems;
  const int64_t grid = (n + kDequantTileElems - 1) / kDequantTileElems;
  if (grid == 0) return;
  dequant_blocks_kernel<kType, Out><<<static_cast<unsigned>(grid), kDequantThreads, 0, stream>>>(
      static_cast<const uint8_t*>(src), dst, n_blocks, is_aligned16(dst));
  FERRY_CUDA_CHECK_LAUNCH();
}

template <class Src, class Out>
void launch_convert(const void* src, Out* dst, int64_t n, cudaStream_t stream) {
  const int64_t per_cta = static_cast<int64_t>(kDequantThreads) * 8;
  const int64_t grid = (n + per_cta - 1) / per_cta;
  if (grid == 0) return;
  convert_kernel<Src, Out><<<static_cast<unsigned>(grid), kDequantThreads, 0, stream>>>(
      static_cast<const Src*>(src), dst, n, is_aligned16(src) && is_aligned16(dst));
  FERRY_CUDA_CHECK_LAUNCH();
}

// Calls fn.template operator()<kType>() for a block-quantized type; returns false for any other type.
template <class Fn>
bool dispatch_block_type(GgmlType type, Fn&& fn) {
  switch (type) {
    case GgmlType::Q4_0:
      fn.template operator()<GgmlType::Q4_0>();
      return true;
    case GgmlType::Q4_1:
      fn.template operator()<GgmlType::Q4_1>();
      return true;
    case GgmlType::Q5_0:
      fn.template operator()<GgmlType::Q5_0>();
      return true;
    case GgmlType::Q5_1:
      fn.template operator()<GgmlType::Q5_1>();
      return true;
    case GgmlType::Q8_0:
      fn.template operator()<GgmlType::Q8_0>();
      return true;
    case GgmlType::Q2_K:
      fn.template operator()<GgmlType::Q2_K>();
      return true;
    case GgmlType::Q3_K:
      fn.template operator()<GgmlType::Q3_K>();
      return true;
    case GgmlType::Q4_K:
      fn.template operator()<GgmlType::Q4_K>();
      return true;
    case GgmlType::Q5_K:
      fn.template operator()<GgmlType::Q5_K>();
      return true;
    case GgmlType::Q6_K:
      fn.template operator()<GgmlType::Q6_K>();
      return true;
    case GgmlType::IQ4_NL:
      fn.template operator()<GgmlType::IQ4_NL>();
      return true;
    case GgmlType::IQ4_XS:
      fn.template operator()<GgmlType::IQ4_XS>();
      return true;
    default:
      return false;
  }
}

// x (float32) to FP16 for the GEMM path, on `stream`. Defined in dequant.cu.
void convert_f32_to_fp16(const float* src, __half* dst, int64_t n, cudaStream_t stream);

// Throws UNSUPPORTED / INVALID_ARGUMENT like ref::dequantize for a type the GPU cannot dequantize or an n that is not
// a multiple of the block size. Defined in dequant.cu.
void check_dequant_args(GgmlType type, int64_t n, const char* what);
// Throws INVALID_ARGUMENT unless src has the alignment every GGUF tensor has (2 bytes; 4 for F32).
void check_source_alignment(GgmlType type, const void* src, const char* what);

}  // namespace ferry::cuda::detail
