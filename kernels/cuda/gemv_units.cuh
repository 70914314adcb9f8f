// Per-type "units" for the quantized GEMV (design note: gemv.cu). A unit is the slice of one block that one lane
// decodes in one step: about 4 bytes of quants (plus the block's scales), kE weights. Small units keep the 32 lanes
// of a warp on a short, contiguous span of the row, so each warp-wide load touches few cache lines even though the
// blocks are only 2-byte aligned.
//
// Interface of GemvUnit<type>:
//   kQK     elements per block (8 for the float types: a pseudo-block of one 16- or 32-byte vector)
//   kBytes  bytes per block
//   kParts  units per block; unit u of a row is block u / kParts, part u % kParts
//   kE      weights per unit, a multiple of 4: kE / 4 groups of 4 consecutive elements
//   kAlign  alignment the fast load path needs (row starts and row size); below it the 2-byte path is used
//   kUnroll units a lane loads before decoding (loads in flight vs registers)
//   Raw     the unit's bytes in registers; load() reads it, decode() turns it into kE floats
//   x_off(part, j)  element offset, within the block, of the 4 consecutive elements weights 4j .. 4j+3 multiply
//   kSwapHalves  (float types) odd quads of lanes read their two x groups in the other order (and swap their
//           decoded halves to match), which makes the staged-x reads of 8 lanes hit 8 different bank groups
// The GEMV only needs the dot product, so weights are decoded with fused multiply-adds (no bit-exactness promise).
#pragma once

#include "device_utils.cuh"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/block_layouts.hpp"

namespace ferry::cuda::detail {

template <GgmlType kType>
struct GemvUnit;

struct GemvUnitBase {
  static constexpr bool kSwapHalves = false;
};

// 16 bytes from a 16-byte-aligned address, or as eight 2-byte loads.
__device__ __forceinline__ void ldg_16bytes(const uint8_t* p, bool aligned16, uint32_t* w) {
  if (aligned16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = ldg_u32_a2(p + 4 * i);
  }
}

// Byte idx (0..11) of the 12 bytes held in three words; idx is not a compile-time constant.
__device__ __forceinline__ uint32_t byte_of3(uint32_t a, uint32_t b, uint32_t c, int idx) {
  const uint32_t w = idx < 4 ? a : (idx < 8 ? b : c);
  return (w >> (8 * (idx & 3))) & 0xffu;
}

// w[0..3] = d * (byte_i(lo) - bias), w[4..7] likewise for hi.
__device__ __forceinline__ void scale8(uint32_t lo, uint32_t hi, float d, float bias, float* w) {
  u8x4_to_float(lo, bias, w);
  u8x4_to_float(hi, bias, w + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) w[i] *= d;
}

// ---- 32-element blocks: part s = 0..3 holds qs bytes 4s..4s+3, i.e. elements 4s+i (low nibbles), 16+4s+i (high) --
template <>
struct GemvUnit<GgmlType::Q4_0> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 18, kParts = 4, kE = 8, kAlign = 2, kUnroll = 4;
  struct Raw {
    uint32_t d, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ldg_u16(b), ldg_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
    scale8(r.qs & 0x0f0f0f0fu, (r.qs >> 4) & 0x0f0f0f0fu, half_bits_to_float(r.d), 8.0f, w);
  }
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

template <>
struct GemvUnit<GgmlType::IQ4_NL> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 18, kParts = 4, kE = 8, kAlign = 2, kUnroll = 4;
  using Raw = GemvUnit<GgmlType::Q4_0>::Raw;
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ldg_u16(b), ldg_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
    const float d = half_bits_to_float(r.d);
    s8x4_to_float(iq4_lookup4(r.qs & 0x0f0f0f0fu), w);
    s8x4_to_float(iq4_lookup4((r.qs >> 4) & 0x0f0f0f0fu), w + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] *= d;
  }
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

template <>
struct GemvUnit<GgmlType::Q4_1> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 20, kParts = 4, kE = 8, kAlign = 4, kUnroll = 4;
  struct Raw {
    uint32_t dm, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool aligned) {
    return {ldg_u32(b, aligned), ldg_u32(b + 4 + 4 * s, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
    const float d = half_bits_to_float(r.dm), m = half_bits_to_float(r.dm >> 16);
    u8x4_to_float(r.qs & 0x0f0f0f0fu, 0.0f, w);
    u8x4_to_float((r.qs >> 4) & 0x0f0f0f0fu, 0.0f, w + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = fmaf(d, w[i], m);
  }
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

// Spreads bits 0..3 of h to bit 4 of bytes 0..3 (the fifth bit of four Q5 quants).
__device__ __forceinline__ uint32_t gemv_bits_to_bit4(uint32_t h) {
  return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

template <>
struct GemvUnit<GgmlType::Q5_0> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 22, kParts = 4, kE = 8, kAlign = 2, kUnroll = 4;
  struct Raw {
    uint32_t d, qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ldg_u16(b), ldg_u32_a2(b + 2), ldg_u32_a2(b + 6 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int s, float* w) {
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (4 * s)) & 15u);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (16 + 4 * s)) & 15u);
    scale8(lo, hi, half_bits_to_float(r.d), 16.0f, w);
  }
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

template <>
struct GemvUnit<GgmlType::Q5_1> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 24, kParts = 4, kE = 8, kAlign = 4, kUnroll = 4;
  struct Raw {
    uint32_t dm, qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool aligned) {
    return {ldg_u32(b, aligned), ldg_u32(b + 4, aligned), ldg_u32(b + 8 + 4 * s, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int s, float* w) {
    const float d = half_bits_to_float(r.dm), m = half_bits_to_float(r.dm >> 16);
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (4 * s)) & 15u);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (16 + 4 * s)) & 15u);
    u8x4_to_float(lo, 0.0f, w);
    u8x4_to_float(hi, 0.0f, w + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = fmaf(d, w[i], m);
  }
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

// Q8_0: part s = 0..7 holds qs[4s .. 4s+3].
template <>
struct GemvUnit<GgmlType::Q8_0> : GemvUnitBase {
  static constexpr int kQK = kQK4, kBytes = 34, kParts = 8, kE = 4, kAlign = 2, kUnroll = 4;
  struct Raw {
    uint32_t d, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ldg_u16(b), ldg_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
    const float d = half_bits_to_float(r.d);
    s8x4_to_float(r.qs, w);
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] *= d;
  }
  static __device__ __forceinline__ int x_off(int s, int) { return 4 * s; }
};

// ---- 256-element super-blocks ----------------------------------------------------------------------------------
// Q2_K: part p = 8h + w holds qs[32h + 4w .. +3]; shift 2j of those bytes is elements 128h + 32j + 4w + i, in
// group 8h + 2j + w/4 (scale bytes 8h .. 8h+7 cover all four j).
template <>
struct GemvUnit<GgmlType::Q2_K> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 84, kParts = 16, kE = 16, kAlign = 4, kUnroll = 2;
  struct Raw {
    uint32_t qs, s0, s1, dm;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    const int h = p / 8, w = p % 8;
    return {ldg_u32(b + 16 + 32 * h + 4 * w, aligned), ldg_u32(b + 8 * h, aligned), ldg_u32(b + 8 * h + 4, aligned),
            ldg_u32(b + 80, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* out) {
    const float d = half_bits_to_float(r.dm), dmin = half_bits_to_float(r.dm >> 16);
    const int w4 = (p % 8) / 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int idx = 2 * j + w4;  // 0..7 within the 8 scale bytes
      const uint32_t s = ((j < 2 ? r.s0 : r.s1) >> (8 * (idx & 3))) & 0xffu;
      const float dl = d * static_cast<float>(s & 15u), ml = dmin * static_cast<float>(s >> 4);
      float q[4];
      u8x4_to_float((r.qs >> (2 * j)) & 0x03030303u, 0.0f, q);
#pragma unroll
      for (int i = 0; i < 4; ++i) out[4 * j + i] = fmaf(dl, q[i], -ml);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 128 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q3_K: as Q2_K for the low bits; hmask[4w .. 4w+3] bit 4h + j is the high bit; 12 scale bytes + d at 96.
template <>
struct GemvUnit<GgmlType::Q3_K> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 110, kParts = 16, kE = 16, kAlign = 2, kUnroll = 2;
  struct Raw {
    uint32_t qs, hm, s0, s1, s2, d;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    const int h = p / 8, w = p % 8;
    return {ldg_u32_a2(b + 32 + 32 * h + 4 * w), ldg_u32_a2(b + 4 * w), ldg_u32_a2(b + 96), ldg_u32_a2(b + 100),
            ldg_u32_a2(b + 104), ldg_u16(b + 108)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* out) {
    const float d = half_bits_to_float(r.d);
    const int h = p / 8, w4 = (p % 8) / 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int g = 8 * h + 2 * j + w4;
      const uint32_t low = (byte_of3(r.s0, r.s1, r.s2, g % 8) >> (4 * h)) & 15u;
      const uint32_t high = (byte_of3(r.s0, r.s1, r.s2, 8 + g % 4) >> (2 * (g / 4))) & 3u;
      const float dl = d * static_cast<float>(static_cast<int>(low | (high << 4)) - 32);
      const uint32_t q = ((r.qs >> (2 * j)) & 0x03030303u) | (((r.hm >> (4 * h + j)) & 0x01010101u) << 2);
      float v[4];
      u8x4_to_float(q, 4.0f, v);
#pragma unroll
      for (int i = 0; i < 4; ++i) out[4 * j + i] = dl * v[i];
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 128 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q4_K: part p = 8c + q holds qs[32c + 4q .. +3]: low nibbles are elements 64c + 4q + i (group 2c), high nibbles
// 64c + 32 + 4q + i (group 2c + 1). The 16-byte header (d, dmin, scales) is one vector load.
__device__ __forceinline__ void k4_scale_min_words(int j, const uint32_t* h, float d, float dmin, float& dl,
                                                   float& ml) {
  uint32_t sc, m;
  if (j < 4) {
    sc = byte_of3(h[1], h[2], h[3], j) & 63u;
    m = byte_of3(h[1], h[2], h[3], j + 4) & 63u;
  } else {
    const uint32_t a = byte_of3(h[1], h[2], h[3], j + 4);
    sc = (a & 15u) | ((byte_of3(h[1], h[2], h[3], j - 4) >> 6) << 4);
    m = (a >> 4) | ((byte_of3(h[1], h[2], h[3], j) >> 6) << 4);
  }
  dl = d * static_cast<float>(sc);
  ml = dmin * static_cast<float>(m);
}

template <>
struct GemvUnit<GgmlType::Q4_K> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 144, kParts = 32, kE = 8, kAlign = 16, kUnroll = 4;
  struct Raw {
    uint32_t h[4], qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.h);
    r.qs = ldg_u32(b + 16 + 32 * (p / 8) + 4 * (p % 8), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* w) {
    const float d = half_bits_to_float(r.h[0]), dmin = half_bits_to_float(r.h[0] >> 16);
    const int c = p / 8;
    float dl0, ml0, dl1, ml1;
    k4_scale_min_words(2 * c, r.h, d, dmin, dl0, ml0);
    k4_scale_min_words(2 * c + 1, r.h, d, dmin, dl1, ml1);
    u8x4_to_float(r.qs & 0x0f0f0f0fu, 0.0f, w);
    u8x4_to_float((r.qs >> 4) & 0x0f0f0f0fu, 0.0f, w + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = fmaf(dl0, w[i], -ml0);
      w[4 + i] = fmaf(dl1, w[4 + i], -ml1);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 64 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q5_K: as Q4_K plus qh[4q .. 4q+3], bit 2c (low nibbles) and 2c + 1 (high nibbles).
template <>
struct GemvUnit<GgmlType::Q5_K> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 176, kParts = 32, kE = 8, kAlign = 16, kUnroll = 2;
  struct Raw {
    uint32_t h[4], qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.h);
    r.qh = ldg_u32(b + 16 + 4 * (p % 8), aligned);
    r.qs = ldg_u32(b + 48 + 32 * (p / 8) + 4 * (p % 8), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* w) {
    const float d = half_bits_to_float(r.h[0]), dmin = half_bits_to_float(r.h[0] >> 16);
    const int c = p / 8;
    float dl0, ml0, dl1, ml1;
    k4_scale_min_words(2 * c, r.h, d, dmin, dl0, ml0);
    k4_scale_min_words(2 * c + 1, r.h, d, dmin, dl1, ml1);
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | (((r.qh >> (2 * c)) & 0x01010101u) << 4);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | (((r.qh >> (2 * c + 1)) & 0x01010101u) << 4);
    u8x4_to_float(lo, 0.0f, w);
    u8x4_to_float(hi, 0.0f, w + 4);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      w[i] = fmaf(dl0, w[i], -ml0);
      w[4 + i] = fmaf(dl1, w[4 + i], -ml1);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 64 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q6_K: part p = 8h + w: ql[64h + 4w ..] (k = 0 low nibbles, k = 2 high), ql[64h + 32 + 4w ..] (k = 1, 3),
// qh[32h + 4w ..] bits 2k: elements 128h + 32k + 4w + i, scale 8h + 2k + w/4 (one byte of the u16 at 8h + 2k).
template <>
struct GemvUnit<GgmlType::Q6_K> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 210, kParts = 16, kE = 16, kAlign = 2, kUnroll = 2;
  struct Raw {
    uint32_t ql0, ql1, qh, sc[4], d;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    const int h = p / 8, w = p % 8;
    Raw r;
    r.ql0 = ldg_u32_a2(b + 64 * h + 4 * w);
    r.ql1 = ldg_u32_a2(b + 64 * h + 32 + 4 * w);
    r.qh = ldg_u32_a2(b + 128 + 32 * h + 4 * w);
#pragma unroll
    for (int k = 0; k < 4; ++k) r.sc[k] = ldg_u16(b + 192 + 8 * h + 2 * k);
    r.d = ldg_u16(b + 208);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* out) {
    const float d = half_bits_to_float(r.d);
    const int w4 = (p % 8) / 4;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float dl = d * static_cast<float>(static_cast<int8_t>((r.sc[k] >> (8 * w4)) & 0xffu));
      const uint32_t low = (((k % 2) ? r.ql1 : r.ql0) >> (4 * (k / 2))) & 0x0f0f0f0fu;
      const uint32_t q = low | (((r.qh >> (2 * k)) & 0x03030303u) << 4);
      float v[4];
      u8x4_to_float(q, 32.0f, v);
#pragma unroll
      for (int i = 0; i < 4; ++i) out[4 * k + i] = dl * v[i];
    }
  }
  static __device__ __forceinline__ int x_off(int p, int k) { return 128 * (p / 8) + 32 * k + 4 * (p % 8); }
};

// IQ4_XS: part p = 4g + s holds qs[16g + 4s .. +3]: elements 32g + 4s + i (low nibbles), 32g + 16 + 4s + i (high).
template <>
struct GemvUnit<GgmlType::IQ4_XS> : GemvUnitBase {
  static constexpr int kQK = kQKK, kBytes = 136, kParts = 32, kE = 8, kAlign = 8, kUnroll = 4;
  struct Raw {
    uint32_t h0, h1, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    if (aligned) {
      const uint2 u = __ldg(reinterpret_cast<const uint2*>(b));
      r.h0 = u.x, r.h1 = u.y;
    } else {
      r.h0 = ldg_u32_a2(b), r.h1 = ldg_u32_a2(b + 4);
    }
    r.qs = ldg_u32(b + 8 + 16 * (p / 4) + 4 * (p % 4), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* w) {
    const int g = p / 4;
    const uint32_t ls = ((r.h1 >> (8 * (g / 2) + 4 * (g % 2))) & 15u) | (((r.h0 >> (16 + 2 * g)) & 3u) << 4);
    const float dl = half_bits_to_float(r.h0) * static_cast<float>(static_cast<int>(ls) - 32);
    s8x4_to_float(iq4_lookup4(r.qs & 0x0f0f0f0fu), w);
    s8x4_to_float(iq4_lookup4((r.qs >> 4) & 0x0f0f0f0fu), w + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] *= dl;
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 32 * (p / 4) + 16 * j + 4 * (p % 4); }
};

// ---- float weights: a pseudo-block of 8 elements, one 16-byte (F16, BF16) or two (F32) vectors ------------------
template <bool kBf16>
struct GemvUnitHalf {
  static constexpr int kQK = 8, kBytes = 16, kParts = 1, kE = 8, kAlign = 16, kUnroll = 2;
  static constexpr bool kSwapHalves = true;
  struct Raw {
    uint32_t v[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.v);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (kBf16) {
        w[2 * i] = bf16_bits_to_float(r.v[i]);
        w[2 * i + 1] = bf16_bits_to_float(r.v[i] >> 16);
      } else {
        w[2 * i] = half_bits_to_float(r.v[i]);
        w[2 * i + 1] = half_bits_to_float(r.v[i] >> 16);
      }
    }
  }
  static __device__ __forceinline__ int x_off(int, int j) { return 4 * j; }
};
template <>
struct GemvUnit<GgmlType::F16> : GemvUnitHalf<false> {};
template <>
struct GemvUnit<GgmlType::BF16> : GemvUnitHalf<true> {};

template <>
struct GemvUnit<GgmlType::F32> {
  static constexpr int kQK = 8, kBytes = 32, kParts = 1, kE = 8, kAlign = 16, kUnroll = 1;
  static constexpr bool kSwapHalves = true;
  struct Raw {
    uint32_t v[8];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool aligned) {
    Raw r;
    ldg_16bytes(b, aligned, r.v);
    ldg_16bytes(b + 16, aligned, r.v + 4);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* w) {
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = __uint_as_float(r.v[i]);
  }
  static __device__ __forceinline__ int x_off(int, int j) { return 4 * j; }
};

}  // namespace ferry::cuda::detail
