// AVX2 + FMA + F16C GEMV kernels: the same arithmetic as gemv_scalar.cpp (see gemv.hpp for the design and error
// budget), one hand-written decoder per type. Compiled for the baseline ISA; every function here carries
// FERRY_TARGET_AVX2 and is only reached when isa.cpp found AVX2, FMA and F16C at run time.
//
// Per 32 weights the integer work is: decode to 32 bytes, then per token one vpmaddubsw (pair sums stay inside int16:
// unsigned codes are <= 31 against |x| <= 127, and signed codes go through the sign trick, |w| <= 128 as the unsigned
// operand), one vpmaddwd (by 1, or by the two 16-element integer scales), one cvt and one FMA with d_w * d_x.
// Codes with a constant offset (Q4_0: q - 8, Q5_0: q - 16, Q6_K: q - 32, Q3_K: q - 4) are made signed with one byte
// subtraction; affine types (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) keep unsigned codes and add their min term, m * d_x *
// sum(x_q), to a scalar per token.
#include "gemv.hpp"

#if FERRY_CPU_X86

#include <immintrin.h>

#include <cstddef>
#include <cstring>

#include "ferry/kernels/block_layouts.hpp"

namespace ferry::cpu::detail {
namespace {

FERRY_TARGET_AVX2 inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

FERRY_TARGET_AVX2 inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 bytes -> 32 codes: elements 0..15 are the low nibbles, 16..31 the high nibbles (the 32-element block order).
// One broadcast load, one per-lane shift (0 for the low half, 4 for the high half), one mask.
FERRY_TARGET_AVX2 inline __m256i nibbles32(const uint8_t* p) {
  const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(15));
}

// Bit i of `bits` -> byte i = 0xFF or 0x00.
FERRY_TARGET_AVX2 inline __m256i bits_to_bytes(uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i select = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

// Byte-wise: (v & mask) != 0 ? value : 0.
FERRY_TARGET_AVX2 inline __m256i bit_select(__m256i v, uint8_t mask, uint8_t value) {
  const __m256i m = _mm256_set1_epi8(static_cast<char>(mask));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(v, m), m), _mm256_set1_epi8(static_cast<char>(value)));
}

// Bytes shifted right by `count` bits and masked (a 16-bit shift; the mask drops what crossed from the next byte).
FERRY_TARGET_AVX2 inline __m256i shift_mask(__m256i v, int count, uint8_t mask) {
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(count)), _mm256_set1_epi8(static_cast<char>(mask)));
}

FERRY_TARGET_AVX2 inline __m256i minus_bytes(__m256i v, int value) {
  return _mm256_sub_epi8(v, _mm256_set1_epi8(static_cast<char>(value)));
}

// sum over each 4 consecutive bytes of u * x (u unsigned, x signed) -> 8 int32
FERRY_TARGET_AVX2 inline __m256i dot_u8(__m256i u, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}
// Both signed: move w's sign onto x so the unsigned operand is |w| (|-128| reads as 128 unsigned, still exact).
FERRY_TARGET_AVX2 inline __m256i dot_i8(__m256i w, __m256i x) {
  return dot_u8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}
// As dot_i8 with int16 scales: s16 holds the scale of elements 0..15 in its low half and of 16..31 in its high half.
FERRY_TARGET_AVX2 inline __m256i dot_i8_scaled(__m256i w, __m256i x, __m256i s16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), s16);
}
FERRY_TARGET_AVX2 inline __m256i dot_u8_scaled(__m256i u, __m256i x, __m256i s16) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), s16);
}
FERRY_TARGET_AVX2 inline __m256i two_scales(int lo, int hi) {
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(hi)), _mm_set1_epi16(static_cast<int16_t>(lo)));
}
FERRY_TARGET_AVX2 inline __m256i xqs(const Q8Block& x) { return load32(x.qs); }
FERRY_TARGET_AVX2 inline __m256 fma_scaled(float scale, __m256i isum, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(isum), acc);
}

FERRY_TARGET_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

FERRY_TARGET_AVX2 inline __m256i iq4nl_lookup(__m256i nibbles) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues));
  return _mm256_shuffle_epi8(_mm256_set_m128i(table, table), nibbles);
}

// Each kernel struct: kElems elements of weight type kType per block of kBytes; dot<NT>(block, x, stride, acc, acc2,
// bias) adds the block's dot product with token t's activations (the Q8Blocks of this block, x + t * stride) to acc[t]
// / acc2[t] (vectors; kernels with several sub-blocks alternate between the two so consecutive FMAs do not wait on each
// other's latency) and bias[t] (scalar min/offset terms). acc and acc2 may be the same array.
struct KQ4_0 {
  static constexpr GgmlType kType = GgmlType::Q4_0;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_0);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256*, float*) {
    const float d = half_at(p + offsetof(BlockQ4_0, d));
    const __m256i w = minus_bytes(nibbles32(p + offsetof(BlockQ4_0, qs)), 8);
    for (int t = 0; t < NT; ++t) {
      const Q8Block& xb = x[t * stride];
      acc[t] = fma_scaled(d * xb.d, dot_i8(w, xqs(xb)), acc[t]);
    }
  }
};

struct KQ4_1 {
  static constexpr GgmlType kType = GgmlType::Q4_1;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_1);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256*,
                                    float* bias) {
    const float d = half_at(p + offsetof(BlockQ4_1, d)), m = half_at(p + offsetof(BlockQ4_1, m));
    const __m256i u = nibbles32(p + offsetof(BlockQ4_1, qs));
    for (int t = 0; t < NT; ++t) {
      const Q8Block& xb = x[t * stride];
      acc[t] = fma_scaled(d * xb.d, dot_u8(u, xqs(xb)), acc[t]);
      bias[t] += m * xb.ds;
    }
  }
};

template <class Block, bool kHasMin>
struct KQ5 {
  static constexpr GgmlType kType = kHasMin ? GgmlType::Q5_1 : GgmlType::Q5_0;
  static constexpr int kElems = 32, kBytes = sizeof(Block);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256*,
                                    float* bias) {
    const float d = half_at(p + offsetof(Block, d));
    uint32_t qh;
    std::memcpy(&qh, p + offsetof(Block, qh), 4);
    const __m256i u =
        _mm256_or_si256(nibbles32(p + offsetof(Block, qs)), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
    if constexpr (kHasMin) {
      const float m = half_at(p + offsetof(Block, m));
      for (int t = 0; t < NT; ++t) {
        const Q8Block& xb = x[t * stride];
        acc[t] = fma_scaled(d * xb.d, dot_u8(u, xqs(xb)), acc[t]);
        bias[t] += m * xb.ds;
      }
    } else {
      const __m256i w = minus_bytes(u, 16);
      for (int t = 0; t < NT; ++t) {
        const Q8Block& xb = x[t * stride];
        acc[t] = fma_scaled(d * xb.d, dot_i8(w, xqs(xb)), acc[t]);
      }
    }
  }
};

struct KQ8_0 {
  static constexpr GgmlType kType = GgmlType::Q8_0;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ8_0);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256*, float*) {
    const float d = half_at(p + offsetof(BlockQ8_0, d));
    const __m256i w = load32(p + offsetof(BlockQ8_0, qs));
    for (int t = 0; t < NT; ++t) {
      const Q8Block& xb = x[t * stride];
      acc[t] = fma_scaled(d * xb.d, dot_i8(w, xqs(xb)), acc[t]);
    }
  }
};

struct KIQ4_NL {
  static constexpr GgmlType kType = GgmlType::IQ4_NL;
  static constexpr int kElems = 32, kBytes = sizeof(BlockIQ4_NL);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256*, float*) {
    const float d = half_at(p + offsetof(BlockIQ4_NL, d));
    const __m256i w = iq4nl_lookup(nibbles32(p + offsetof(BlockIQ4_NL, qs)));
    for (int t = 0; t < NT; ++t) {
      const Q8Block& xb = x[t * stride];
      acc[t] = fma_scaled(d * xb.d, dot_i8(w, xqs(xb)), acc[t]);
    }
  }
};

// Sub-block s = 4h + j (elements 128h + 32j ..): bits 2j of qs[32h + l]; groups 2s (first 16) and 2s + 1.
struct KQ2_K {
  static constexpr GgmlType kType = GgmlType::Q2_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ2_K);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256* acc2,
                                    float* bias) {
    const float d = half_at(p + offsetof(BlockQ2_K, d)), dmin = half_at(p + offsetof(BlockQ2_K, dmin));
    const uint8_t* scales = p + offsetof(BlockQ2_K, scales);
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load32(p + offsetof(BlockQ2_K, qs) + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const int s = 4 * h + j;
        const int sa = scales[2 * s], sb = scales[2 * s + 1];
        const __m256i u = shift_mask(v, 2 * j, 3);
        const __m256i s16 = two_scales(sa & 15, sb & 15);
        const float ma = dmin * static_cast<float>(sa >> 4), mb = dmin * static_cast<float>(sb >> 4);
        __m256* a = j % 2 ? acc2 : acc;
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t * stride + s];
          a[t] = fma_scaled(d * xb.d, dot_u8_scaled(u, xqs(xb), s16), a[t]);
          bias[t] -= xb.d * (ma * static_cast<float>(xb.sum[0]) + mb * static_cast<float>(xb.sum[1]));
        }
      }
    }
  }
};

// As Q2_K; w = low 2 bits + 4 * hmask bit (4h + j of hmask[l]) - 4, in -4..3.
struct KQ3_K {
  static constexpr GgmlType kType = GgmlType::Q3_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ3_K);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256* acc2,
                                    float*) {
    const float d = half_at(p + offsetof(BlockQ3_K, d));
    const uint8_t* packed = p + offsetof(BlockQ3_K, scales);
    const __m256i hm = load32(p + offsetof(BlockQ3_K, hmask));
    for (int h = 0; h < 2; ++h) {
      const __m256i v = load32(p + offsetof(BlockQ3_K, qs) + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const int s = 4 * h + j;
        const __m256i w =
            minus_bytes(_mm256_or_si256(shift_mask(v, 2 * j, 3), bit_select(hm, static_cast<uint8_t>(1u << s), 4)), 4);
        const __m256i s16 = two_scales(q3_k_scale(2 * s, packed) - 32, q3_k_scale(2 * s + 1, packed) - 32);
        __m256* a = j % 2 ? acc2 : acc;
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t * stride + s];
          a[t] = fma_scaled(d * xb.d, dot_i8_scaled(w, xqs(xb), s16), a[t]);
        }
      }
    }
  }
};

// Chunk c: qs[32c + l] low nibbles are group 2c, high nibbles group 2c + 1; Q5_K adds bit g of qh[l] as bit 4.
template <class Block, bool kFifthBit>
struct KK4Like {
  static constexpr GgmlType kType = kFifthBit ? GgmlType::Q5_K : GgmlType::Q4_K;
  static constexpr int kElems = 256, kBytes = sizeof(Block);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256* acc2,
                                    float* bias) {
    const float d = half_at(p + offsetof(Block, d)), dmin = half_at(p + offsetof(Block, dmin));
    float dsc[8], dm[8];
    for (int g = 0; g < 8; ++g) {
      uint8_t sc = 0, m = 0;
      k4_scale_min(g, p + offsetof(Block, scales), &sc, &m);
      dsc[g] = d * static_cast<float>(sc);
      dm[g] = dmin * static_cast<float>(m);
    }
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = load32(p + offsetof(Block, qh));
    for (int c = 0; c < 4; ++c) {
      const __m256i v = load32(p + offsetof(Block, qs) + 32 * c);
      __m256i lo = _mm256_and_si256(v, _mm256_set1_epi8(15));
      __m256i hi = shift_mask(v, 4, 15);
      if constexpr (kFifthBit) {
        lo = _mm256_or_si256(lo, bit_select(qh, static_cast<uint8_t>(1u << (2 * c)), 16));
        hi = _mm256_or_si256(hi, bit_select(qh, static_cast<uint8_t>(1u << (2 * c + 1)), 16));
      }
      for (int t = 0; t < NT; ++t) {
        const Q8Block& x0 = x[t * stride + 2 * c];
        const Q8Block& x1 = x[t * stride + 2 * c + 1];
        acc[t] = fma_scaled(dsc[2 * c] * x0.d, dot_u8(lo, xqs(x0)), acc[t]);
        acc2[t] = fma_scaled(dsc[2 * c + 1] * x1.d, dot_u8(hi, xqs(x1)), acc2[t]);
        bias[t] -= dm[2 * c] * x0.ds + dm[2 * c + 1] * x1.ds;
      }
    }
  }
};

// Sub-block s = 4h + k: low 4 bits from ql[64h + 32 (k % 2) + l] (nibble k / 2), high 2 bits from qh[32h + l] >> 2k;
// w = q in -32..31.
struct KQ6_K {
  static constexpr GgmlType kType = GgmlType::Q6_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ6_K);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256* acc2,
                                    float*) {
    const float d = half_at(p + offsetof(BlockQ6_K, d));
    const auto* scales = reinterpret_cast<const int8_t*>(p + offsetof(BlockQ6_K, scales));
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load32(p + offsetof(BlockQ6_K, ql) + 64 * h);
      const __m256i ql1 = load32(p + offsetof(BlockQ6_K, ql) + 64 * h + 32);
      const __m256i qh = load32(p + offsetof(BlockQ6_K, qh) + 32 * h);
      for (int k = 0; k < 4; ++k) {
        const int s = 4 * h + k;
        const __m256i low = shift_mask(k % 2 ? ql1 : ql0, 4 * (k / 2), 15);
        const __m256i high = _mm256_slli_epi16(shift_mask(qh, 2 * k, 3), 4);
        const __m256i w = minus_bytes(_mm256_or_si256(low, high), 32);
        const __m256i s16 = two_scales(scales[2 * s], scales[2 * s + 1]);
        __m256* a = k % 2 ? acc2 : acc;
        for (int t = 0; t < NT; ++t) {
          const Q8Block& xb = x[t * stride + s];
          a[t] = fma_scaled(d * xb.d, dot_i8_scaled(w, xqs(xb), s16), a[t]);
        }
      }
    }
  }
};

struct KIQ4_XS {
  static constexpr GgmlType kType = GgmlType::IQ4_XS;
  static constexpr int kElems = 256, kBytes = sizeof(BlockIQ4_XS);
  template <int NT>
  FERRY_TARGET_AVX2 static void dot(const uint8_t* p, const Q8Block* x, int64_t stride, __m256* acc, __m256* acc2,
                                    float*) {
    BlockIQ4_XS header;  // only d and the scale fields are read from it
    std::memcpy(&header, p, offsetof(BlockIQ4_XS, qs));
    const float d = half_at(p + offsetof(BlockIQ4_XS, d));
    for (int g = 0; g < 8; ++g) {
      const __m256i w = iq4nl_lookup(nibbles32(p + offsetof(BlockIQ4_XS, qs) + 16 * g));
      const float dl = d * static_cast<float>(iq4_xs_scale(g, header) - 32);
      __m256* a = g % 2 ? acc2 : acc;
      for (int t = 0; t < NT; ++t) {
        const Q8Block& xb = x[t * stride + g];
        a[t] = fma_scaled(dl * xb.d, dot_i8(w, xqs(xb)), a[t]);
      }
    }
  }
};

// Software prefetch, kPrefetchBytes ahead of the weights being decoded (past the row's end it is the next row's
// start: rows are contiguous). One core's hardware prefetchers do not run far enough ahead of a GEMV that decodes
// while it reads: cold Q4_0 weights went 4.2 GB/s without, 10.4 with 4 KiB of look-ahead on one core of a Xeon
// (AVX-512 machine, this AVX2 loop); a decode step reads every weight from DRAM, so this is the CPU path's rate.
constexpr int64_t kPrefetchBytes = 4096;
constexpr int64_t kCacheLine = 64;

// Prefetches the cache lines `bytes` ahead of p, `span` bytes' worth (the bytes about to be decoded).
template <int64_t kSpan>
FERRY_TARGET_AVX2 inline void prefetch_ahead(const uint8_t* p) {
  for (int64_t off = 0; off < kSpan; off += kCacheLine)
    _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchBytes + off), _MM_HINT_T0);
}

// Two accumulator sets while registers allow (NT <= 4): consecutive blocks (and sub-blocks) alternate between them,
// halving the FMA dependency chain that otherwise bounds T = 1 at one block per FMA latency.
template <class Kern, int NT>
FERRY_TARGET_AVX2 void rows_quant(const GemvArgs& a, int64_t r0, int64_t r1) {
  constexpr int kSubs = Kern::kElems / kQ8BlockSize;
  constexpr int kSets = NT <= 4 ? 2 : 1;
  const int64_t n_blocks = a.n_cols / Kern::kElems;
  const int64_t stride = a.n_cols / kQ8BlockSize;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + static_cast<uint64_t>(r) * a.row_bytes;
    __m256 acc[2][NT];
    float bias[NT];
    for (int t = 0; t < NT; ++t) {
      acc[0][t] = acc[1][t] = _mm256_setzero_ps();
      bias[t] = 0.0f;
    }
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
      prefetch_ahead<2 * Kern::kBytes>(row + b * Kern::kBytes);
      Kern::template dot<NT>(row + b * Kern::kBytes, a.xq + b * kSubs, stride, acc[0], acc[kSets - 1], bias);
      Kern::template dot<NT>(row + (b + 1) * Kern::kBytes, a.xq + (b + 1) * kSubs, stride, acc[kSets - 1], acc[0],
                             bias);
    }
    if (b < n_blocks)
      Kern::template dot<NT>(row + b * Kern::kBytes, a.xq + b * kSubs, stride, acc[0], acc[kSets - 1], bias);
    for (int t = 0; t < NT; ++t) {
      __m256 sum = acc[0][t];
      if constexpr (kSets == 2) sum = _mm256_add_ps(sum, acc[1][t]);
      a.y[t * a.n_rows + r] = hsum(sum) + bias[t];
    }
  }
}

struct LoadF32 {
  static constexpr GgmlType kType = GgmlType::F32;
  static constexpr int kBytes = 4;
  FERRY_TARGET_AVX2 static __m256 vec(const uint8_t* p, int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * i));
  }
  FERRY_TARGET_AVX2 static float one(const uint8_t* p, int64_t i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
};
struct LoadF16 {
  static constexpr GgmlType kType = GgmlType::F16;
  static constexpr int kBytes = 2;
  FERRY_TARGET_AVX2 static __m256 vec(const uint8_t* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
  }
  FERRY_TARGET_AVX2 static float one(const uint8_t* p, int64_t i) { return half_at(p + 2 * i); }
};
struct LoadBF16 {
  static constexpr GgmlType kType = GgmlType::BF16;
  static constexpr int kBytes = 2;
  FERRY_TARGET_AVX2 static __m256 vec(const uint8_t* p, int64_t i) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  FERRY_TARGET_AVX2 static float one(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    uint32_t bits = static_cast<uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
};

// Float weights: 16 per step with two accumulators per token while there are registers for them (an FMA's latency
// would otherwise bound a single dependency chain below the load rate).
template <class Load, int NT>
FERRY_TARGET_AVX2 void rows_float(const GemvArgs& a, int64_t r0, int64_t r1) {
  constexpr int kU = NT <= 4 ? 2 : 1;
  const int64_t k = a.n_cols;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + static_cast<uint64_t>(r) * a.row_bytes;
    __m256 acc[NT][kU];
    for (int t = 0; t < NT; ++t)
      for (int u = 0; u < kU; ++u) acc[t][u] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 * kU <= k; i += 8 * kU) {
      prefetch_ahead<8 * kU* static_cast<int64_t>(Load::kBytes)>(row + i * Load::kBytes);
      for (int u = 0; u < kU; ++u) {
        const __m256 w = Load::vec(row, i + 8 * u);
        for (int t = 0; t < NT; ++t)
          acc[t][u] = _mm256_fmadd_ps(w, _mm256_loadu_ps(a.xf + t * k + i + 8 * u), acc[t][u]);
      }
    }
    float tail[NT] = {};
    for (; i < k; ++i) {
      const float w = Load::one(row, i);
      for (int t = 0; t < NT; ++t) tail[t] += w * a.xf[t * k + i];
    }
    for (int t = 0; t < NT; ++t) {
      __m256 s = acc[t][0];
      if constexpr (kU == 2) s = _mm256_add_ps(s, acc[t][1]);
      a.y[t * a.n_rows + r] = hsum(s) + tail[t];
    }
  }
}

// The row loops for pick_gemv_kernel (gemv.hpp).
struct Avx2Rows {
  template <class Kern, int NT>
  static constexpr GemvRowsFn quant = &rows_quant<Kern, NT>;
  template <class Load, int NT>
  static constexpr GemvRowsFn floats = &rows_float<Load, NT>;
};

}  // namespace

GemvRowsFn gemv_kernel_avx2(GgmlType type, int n_tokens) {
  return pick_gemv_kernel<Avx2Rows, LoadF32, LoadF16, LoadBF16, KQ4_0, KQ4_1, KQ5<BlockQ5_0, false>,
                          KQ5<BlockQ5_1, true>, KQ8_0, KQ2_K, KQ3_K, KK4Like<BlockQ4_K, false>,
                          KK4Like<BlockQ5_K, true>, KQ6_K, KIQ4_NL, KIQ4_XS>(type, n_tokens);
}

}  // namespace ferry::cpu::detail

#else  // not x86: no AVX2 variant

namespace ferry::cpu::detail {
GemvRowsFn gemv_kernel_avx2(GgmlType, int) { return nullptr; }
}  // namespace ferry::cpu::detail

#endif
