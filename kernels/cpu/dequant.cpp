// cpu::dequantize: the same float32 values as ref::dequantize, bit for bit, faster.
//
// Bit-exactness: each AVX2 path performs exactly the reference's float operations in the same order (Q4_0/Q8_0:
// d * q; Q4_K/Q5_K: (d * sc) * q - (dmin * m); Q6_K: (d * sc) * q), one rounding each, with explicit multiply and
// subtract intrinsics; this file is also compiled with -ffp-contract=off (kernels/CMakeLists.txt) so the scalar
// products (d * sc) are never fused either. F16C's vcvtph2ps is exact and quiets NaNs as ferry::fp16_to_fp32 does.
// Types without a vector path here use ref::dequantize itself. Large calls are split over oneTBB threads in
// block-aligned chunks.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

#include "dequant.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "isa.hpp"

#if FERRY_CPU_X86
#include <immintrin.h>
#endif

namespace ferry::cpu {
namespace {

#if FERRY_CPU_X86

FERRY_TARGET_AVX2 inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// 8 codes (bytes at p, unsigned or signed) -> 8 floats.
FERRY_TARGET_AVX2 inline __m256 u8x8_to_float(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
FERRY_TARGET_AVX2 inline __m256 i8x8_to_float(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

FERRY_TARGET_AVX2 void f16_avx2(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  for (; i < n; ++i) dst[i] = half_at(src + 2 * i);
}

FERRY_TARGET_AVX2 void bf16_avx2(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_fp32(h);
  }
}

// Writes the 32 elements d * (codes[e] - offset); codes are unsigned bytes.
FERRY_TARGET_AVX2 inline void store32_scaled(const uint8_t* codes, int offset, float d, float* y) {
  const __m256 vd = _mm256_set1_ps(d);
  const __m256 off = _mm256_set1_ps(static_cast<float>(offset));
  for (int j = 0; j < 32; j += 8)  // code - offset is an exact small integer in float, so subtracting in float is exact
    _mm256_storeu_ps(y + j, _mm256_mul_ps(vd, _mm256_sub_ps(u8x8_to_float(codes + j), off)));
}

FERRY_TARGET_AVX2 void q4_0_avx2(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = src + b * sizeof(BlockQ4_0);
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(BlockQ4_0, qs)));
    alignas(16) uint8_t codes[32];
    _mm_store_si128(reinterpret_cast<__m128i*>(codes), _mm_and_si128(v, _mm_set1_epi8(15)));
    _mm_store_si128(reinterpret_cast<__m128i*>(codes + 16), _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
    store32_scaled(codes, 8, half_at(p + offsetof(BlockQ4_0, d)), dst + 32 * b);
  }
}

FERRY_TARGET_AVX2 void q8_0_avx2(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = src + b * sizeof(BlockQ8_0);
    const __m256 vd = _mm256_set1_ps(half_at(p + offsetof(BlockQ8_0, d)));
    for (int j = 0; j < 32; j += 8)
      _mm256_storeu_ps(dst + 32 * b + j, _mm256_mul_ps(vd, i8x8_to_float(p + offsetof(BlockQ8_0, qs) + j)));
  }
}

// Q4_K / Q5_K: group g reads nibble g % 2 of qs[32 (g / 2) + l] (+ bit g of qh[l] as bit 4 for Q5_K).
template <class Block, bool kFifthBit>
FERRY_TARGET_AVX2 void k4_like_avx2(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = src + b * sizeof(Block);
    const float d = half_at(p + offsetof(Block, d)), dmin = half_at(p + offsetof(Block, dmin));
    const uint8_t* qs = p + offsetof(Block, qs);
    for (int g = 0; g < 8; ++g) {
      uint8_t sc = 0, m = 0;
      k4_scale_min(g, p + offsetof(Block, scales), &sc, &m);
      const __m256 dl = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 ml = _mm256_set1_ps(dmin * static_cast<float>(m));
      alignas(32) uint8_t codes[32];
      const int shift = 4 * (g % 2);
      for (int l = 0; l < 32; ++l) {
        int q = (qs[32 * (g / 2) + l] >> shift) & 15;
        if constexpr (kFifthBit) q |= ((p[offsetof(Block, qh) + l] >> g) & 1) << 4;
        codes[l] = static_cast<uint8_t>(q);
      }
      for (int j = 0; j < 32; j += 8)
        _mm256_storeu_ps(dst + 256 * b + 32 * g + j, _mm256_sub_ps(_mm256_mul_ps(dl, u8x8_to_float(codes + j)), ml));
    }
  }
}

FERRY_TARGET_AVX2 void q6_k_avx2(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = src + b * sizeof(BlockQ6_K);
    const float d = half_at(p + offsetof(BlockQ6_K, d));
    const auto* scales = reinterpret_cast<const int8_t*>(p + offsetof(BlockQ6_K, scales));
    const uint8_t* ql = p + offsetof(BlockQ6_K, ql);
    const uint8_t* qh = p + offsetof(BlockQ6_K, qh);
    for (int h = 0; h < 2; ++h) {
      for (int k = 0; k < 4; ++k) {
        alignas(32) uint8_t codes[32];
        for (int l = 0; l < 32; ++l) {
          const int low = (ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
          const int high = (qh[32 * h + l] >> (2 * k)) & 3;
          codes[l] = static_cast<uint8_t>(low | (high << 4));
        }
        const int e0 = 128 * h + 32 * k;
        for (int j = 0; j < 32; j += 8) {
          const __m256 dl = _mm256_set1_ps(d * static_cast<float>(scales[(e0 + j) / 16]));
          const __m256 q = _mm256_sub_ps(u8x8_to_float(codes + j), _mm256_set1_ps(32.0f));  // exact small integers
          _mm256_storeu_ps(dst + 256 * b + e0 + j, _mm256_mul_ps(dl, q));
        }
      }
    }
  }
}

// The vector path for a type, or false when the type has none (the caller then uses the reference).
bool dequantize_avx2(GgmlType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case GgmlType::F16:
      f16_avx2(src, dst, n);
      return true;
    case GgmlType::BF16:
      bf16_avx2(src, dst, n);
      return true;
    case GgmlType::Q4_0:
      q4_0_avx2(src, dst, n / kQK4);
      return true;
    case GgmlType::Q8_0:
      q8_0_avx2(src, dst, n / kQK4);
      return true;
    case GgmlType::Q4_K:
      k4_like_avx2<BlockQ4_K, false>(src, dst, n / kQKK);
      return true;
    case GgmlType::Q5_K:
      k4_like_avx2<BlockQ5_K, true>(src, dst, n / kQKK);
      return true;
    case GgmlType::Q6_K:
      q6_k_avx2(src, dst, n / kQKK);
      return true;
    default:
      return false;
  }
}

#endif  // FERRY_CPU_X86

}  // namespace

void detail::dequantize_serial(GgmlType type, const void* src, float* dst, int64_t n) {
#if FERRY_CPU_X86
  if (detail::active_isa() == detail::CpuIsa::AVX2 && dequantize_avx2(type, static_cast<const uint8_t*>(src), dst, n))
    return;
#endif
  ref::dequantize(type, src, dst, n);
}

void dequantize(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (!t.dequantizable || n < 0 || n % t.block_size != 0 || n == 0) {
    ref::dequantize(type, src, dst, n);  // the reference's checks and messages (UNSUPPORTED / INVALID_ARGUMENT)
    return;
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  // Chunks of ~256K elements: large enough that a task's overhead is noise, small enough to spread a tensor.
  constexpr int64_t kChunkElems = int64_t{1} << 18;
  const int64_t block = t.block_size;
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkElems / block);
  const int64_t n_blocks = n / block;
  if (n_blocks <= chunk_blocks) {
    detail::dequantize_serial(type, bytes, dst, n);
    return;
  }
  const int64_t n_chunks = (n_blocks + chunk_blocks - 1) / chunk_blocks;
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_chunks), [&](const tbb::blocked_range<int64_t>& range) {
    for (int64_t c = range.begin(); c < range.end(); ++c) {
      const int64_t b0 = c * chunk_blocks;
      const int64_t nb = std::min(chunk_blocks, n_blocks - b0);
      detail::dequantize_serial(type, bytes + static_cast<uint64_t>(b0) * t.type_size, dst + b0 * block, nb * block);
    }
  });
}

}  // namespace ferry::cpu
