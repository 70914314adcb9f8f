// Per-type "units" for the quantized GEMV (design note: gemv.cu). A unit is the slice of one block that one lane
// decodes in one step: 4 bytes of quants (8 bytes for Q6_K's two ql words) plus the block's scales, kE weights.
// The lanes of a warp take consecutive units of one row, so their reads of the staged row bytes stay within a few
// hundred bytes (few shared-memory bank conflicts) even though most blocks are only 2-byte aligned.
//
// Interface of GemvUnit<type> (quantized types):
//   kQK     elements per block        kBytes  bytes per block
//   kParts  units per block; unit u of a row is block u / kParts, part u % kParts
//   kE      weights per unit, a multiple of 4: kE / 4 groups of 4 consecutive elements
//   kAlign  alignment the wide-load path needs (row starts and row size); below it 2-byte loads are used
//   kChunk  elements of a row per pipeline stage (about 600 bytes of blocks)
//   kHasMin the type has an additive term (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K)
//   Raw     the unit's bytes in registers; load() reads them (from shared memory), decode() splits them into
//           q[kE] (exact small integers as floats) and per-group sc[kE / 4], mn[kE / 4]:
//           weight 4j + i = sc[j] * q[4j + i] - mn[j]
//   x_off(part, j)  element offset, within the block, of the 4 consecutive elements that weights 4j .. 4j+3 multiply
// Keeping the scale out of the per-weight work lets the kernel accumulate sc · Σ q·x (and mn · Σ x) per group: one
// FMA per weight and token instead of a decode multiply plus an FMA.
#pragma once

#include "device_utils.cuh"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/block_layouts.hpp"

namespace ferry::cuda::detail {

template <GgmlType kType>
struct GemvUnit;

// 4-byte and 16-byte reads of staged block bytes; `aligned` (uniform: a property of the matrix) says the fast form
// is legal. Shared memory keeps the global address modulo 16, so the alignment logic is the global one.
__device__ __forceinline__ uint32_t lds_u32(const uint8_t* p, bool aligned) {
  return aligned ? ld_u32_a4(p) : ld_u32_a2(p);
}
__device__ __forceinline__ void lds_16bytes(const uint8_t* p, bool aligned16, uint32_t* w) {
  if (aligned16) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = ld_u32_a2(p + 4 * i);
  }
}

// Byte (sel & 3) of w as an exact float; sel is not a compile-time constant.
__device__ __forceinline__ float byte_at_to_float(uint32_t w, int sel) {
  return __uint_as_float(0x4B000000u | ((w >> (8 * (sel & 3))) & 0xffu)) - 8388608.0f;
}

__device__ __forceinline__ uint32_t gemv_bits_to_bit4(uint32_t h) {
  return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

// ---- 32-element blocks: part s = 0..3 holds qs bytes 4s..4s+3, i.e. elements 4s+i (low nibbles), 16+4s+i (high) --
struct Unit32Base {
  static constexpr int kQK = kQK4, kParts = 4, kE = 8, kChunk = 1024;
  static __device__ __forceinline__ int x_off(int s, int j) { return 16 * j + 4 * s; }
};

template <>
struct GemvUnit<GgmlType::Q4_0> : Unit32Base {
  static constexpr int kBytes = 18, kAlign = 2;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t d, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ld_u16(b), ld_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float* sc, float*) {
    u8x4_to_float(r.qs & 0x0f0f0f0fu, 8.0f, q);
    u8x4_to_float((r.qs >> 4) & 0x0f0f0f0fu, 8.0f, q + 4);
    sc[0] = sc[1] = half_bits_to_float(r.d);
  }
};

template <>
struct GemvUnit<GgmlType::IQ4_NL> : Unit32Base {
  static constexpr int kBytes = 18, kAlign = 2;
  static constexpr bool kHasMin = false;
  using Raw = GemvUnit<GgmlType::Q4_0>::Raw;
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ld_u16(b), ld_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float* sc, float*) {
    s8x4_to_float(iq4_lookup4(r.qs & 0x0f0f0f0fu), q);
    s8x4_to_float(iq4_lookup4((r.qs >> 4) & 0x0f0f0f0fu), q + 4);
    sc[0] = sc[1] = half_bits_to_float(r.d);
  }
};

template <>
struct GemvUnit<GgmlType::Q4_1> : Unit32Base {
  static constexpr int kBytes = 20, kAlign = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t dm, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool aligned) {
    return {lds_u32(b, aligned), lds_u32(b + 4 + 4 * s, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float* sc, float* mn) {
    u8x4_to_float(r.qs & 0x0f0f0f0fu, 0.0f, q);
    u8x4_to_float((r.qs >> 4) & 0x0f0f0f0fu, 0.0f, q + 4);
    sc[0] = sc[1] = half_bits_to_float(r.dm);
    mn[0] = mn[1] = -half_bits_to_float(r.dm >> 16);
  }
};

template <>
struct GemvUnit<GgmlType::Q5_0> : Unit32Base {
  static constexpr int kBytes = 22, kAlign = 2;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t d, qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ld_u16(b), ld_u32_a2(b + 2), ld_u32_a2(b + 6 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int s, float* q, float* sc, float*) {
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (4 * s)) & 15u);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (16 + 4 * s)) & 15u);
    u8x4_to_float(lo, 16.0f, q);
    u8x4_to_float(hi, 16.0f, q + 4);
    sc[0] = sc[1] = half_bits_to_float(r.d);
  }
};

template <>
struct GemvUnit<GgmlType::Q5_1> : Unit32Base {
  static constexpr int kBytes = 24, kAlign = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t dm, qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool aligned) {
    return {lds_u32(b, aligned), lds_u32(b + 4, aligned), lds_u32(b + 8 + 4 * s, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int s, float* q, float* sc, float* mn) {
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (4 * s)) & 15u);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | gemv_bits_to_bit4((r.qh >> (16 + 4 * s)) & 15u);
    u8x4_to_float(lo, 0.0f, q);
    u8x4_to_float(hi, 0.0f, q + 4);
    sc[0] = sc[1] = half_bits_to_float(r.dm);
    mn[0] = mn[1] = -half_bits_to_float(r.dm >> 16);
  }
};

// Q8_0: part s = 0..7 holds qs[4s .. 4s+3].
template <>
struct GemvUnit<GgmlType::Q8_0> {
  static constexpr int kQK = kQK4, kBytes = 34, kParts = 8, kE = 4, kAlign = 2, kChunk = 512;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t d, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int s, bool) {
    return {ld_u16(b), ld_u32_a2(b + 2 + 4 * s)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, float* q, float* sc, float*) {
    s8x4_to_float(r.qs, q);
    sc[0] = half_bits_to_float(r.d);
  }
  static __device__ __forceinline__ int x_off(int s, int) { return 4 * s; }
};

// ---- 256-element super-blocks ----------------------------------------------------------------------------------
// Q2_K: part p = 8h + w holds qs[32h + 4w .. +3]; shift 2j of those bytes is elements 128h + 32j + 4w + i, in
// group 8h + 2j + w/4 (scale bytes 8h .. 8h+7 cover all four j).
template <>
struct GemvUnit<GgmlType::Q2_K> {
  static constexpr int kQK = kQKK, kBytes = 84, kParts = 16, kE = 16, kAlign = 4, kChunk = 2048;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t qs, s0, s1, dm;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    const int h = p / 8, w = p % 8;
    return {lds_u32(b + 16 + 32 * h + 4 * w, aligned), lds_u32(b + 8 * h, aligned), lds_u32(b + 8 * h + 4, aligned),
            lds_u32(b + 80, aligned)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float* mn) {
    const float d = half_bits_to_float(r.dm), dmin = half_bits_to_float(r.dm >> 16);
    const int w4 = (p % 8) / 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t s = ((j < 2 ? r.s0 : r.s1) >> (8 * ((2 * j + w4) & 3))) & 0xffu;
      sc[j] = d * static_cast<float>(s & 15u);
      mn[j] = dmin * static_cast<float>(s >> 4);
      u8x4_to_float((r.qs >> (2 * j)) & 0x03030303u, 0.0f, q + 4 * j);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 128 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q3_K: as Q2_K for the low bits; hmask[4w .. 4w+3] bit 4h + j is the high bit; 12 scale bytes + d at 96.
template <>
struct GemvUnit<GgmlType::Q3_K> {
  static constexpr int kQK = kQKK, kBytes = 110, kParts = 16, kE = 16, kAlign = 2, kChunk = 1536;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t qs, hm, s0, s1, s2, d;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    const int h = p / 8, w = p % 8;
    return {ld_u32_a2(b + 32 + 32 * h + 4 * w),
            ld_u32_a2(b + 4 * w),
            ld_u32_a2(b + 96),
            ld_u32_a2(b + 100),
            ld_u32_a2(b + 104),
            ld_u16(b + 108)};
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float*) {
    const float d = half_bits_to_float(r.d);
    const int h = p / 8, w4 = (p % 8) / 4;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      // Group g = 8h + 2j + w4: low 4 bits in byte (2j + w4) (nibble h), high 2 bits in byte 8 + (2j + w4) % 4.
      const int lb = 2 * j + w4;
      const uint32_t low = ((j < 2 ? r.s0 : r.s1) >> (8 * (lb & 3) + 4 * h)) & 15u;
      const uint32_t high = (r.s2 >> (8 * (lb & 3) + 2 * (2 * h + j / 2))) & 3u;
      sc[j] = d * static_cast<float>(static_cast<int>(low | (high << 4)) - 32);
      const uint32_t qq = ((r.qs >> (2 * j)) & 0x03030303u) | (((r.hm >> (4 * h + j)) & 0x01010101u) << 2);
      u8x4_to_float(qq, 4.0f, q + 4 * j);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 128 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q4_K / Q5_K: part p = 8c + q holds qs[32c + 4q .. +3]: low nibbles are elements 64c + 4q + i (group 2c), high
// nibbles 64c + 32 + 4q + i (group 2c + 1). Scales of groups 2c, 2c + 1 without branches: for c < 2 the 6-bit
// values are bytes of words h1 (scales) and h2 (mins) masked with 63; for c >= 2 low 4 bits come from h3, the top
// two from bits 6-7 of h1 (scales) or h2 (mins).
__device__ __forceinline__ void k4_group_pair(const uint32_t* h, int c, float& dl0, float& ml0, float& dl1,
                                              float& ml1) {
  const float d = half_bits_to_float(h[0]), dmin = half_bits_to_float(h[0] >> 16);
  const bool lo = c < 2;
  const uint32_t scw = lo ? (h[1] & 0x3f3f3f3fu) : ((h[3] & 0x0f0f0f0fu) | ((h[1] >> 2) & 0x30303030u));
  const uint32_t mw = lo ? (h[2] & 0x3f3f3f3fu) : (((h[3] >> 4) & 0x0f0f0f0fu) | ((h[2] >> 2) & 0x30303030u));
  const int b0 = (2 * c) & 3;  // byte of group 2c in these words; group 2c + 1 is the next byte
  dl0 = d * byte_at_to_float(scw, b0);
  dl1 = d * byte_at_to_float(scw, b0 + 1);
  ml0 = dmin * byte_at_to_float(mw, b0);
  ml1 = dmin * byte_at_to_float(mw, b0 + 1);
}

template <>
struct GemvUnit<GgmlType::Q4_K> {
  static constexpr int kQK = kQKK, kBytes = 144, kParts = 32, kE = 8, kAlign = 16, kChunk = 1024;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t h[4], qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    lds_16bytes(b, aligned, r.h);
    r.qs = lds_u32(b + 16 + 32 * (p / 8) + 4 * (p % 8), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float* mn) {
    k4_group_pair(r.h, p / 8, sc[0], mn[0], sc[1], mn[1]);
    u8x4_to_float(r.qs & 0x0f0f0f0fu, 0.0f, q);
    u8x4_to_float((r.qs >> 4) & 0x0f0f0f0fu, 0.0f, q + 4);
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 64 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q5_K: as Q4_K plus qh[4q .. 4q+3], bit 2c (low nibbles) and 2c + 1 (high nibbles).
template <>
struct GemvUnit<GgmlType::Q5_K> {
  static constexpr int kQK = kQKK, kBytes = 176, kParts = 32, kE = 8, kAlign = 16, kChunk = 1024;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t h[4], qh, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    lds_16bytes(b, aligned, r.h);
    r.qh = lds_u32(b + 16 + 4 * (p % 8), aligned);
    r.qs = lds_u32(b + 48 + 32 * (p / 8) + 4 * (p % 8), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float* mn) {
    const int c = p / 8;
    k4_group_pair(r.h, c, sc[0], mn[0], sc[1], mn[1]);
    const uint32_t lo = (r.qs & 0x0f0f0f0fu) | (((r.qh >> (2 * c)) & 0x01010101u) << 4);
    const uint32_t hi = ((r.qs >> 4) & 0x0f0f0f0fu) | (((r.qh >> (2 * c + 1)) & 0x01010101u) << 4);
    u8x4_to_float(lo, 0.0f, q);
    u8x4_to_float(hi, 0.0f, q + 4);
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 64 * (p / 8) + 32 * j + 4 * (p % 8); }
};

// Q6_K: part p = 8h + w: ql[64h + 4w ..] (k = 0 low nibbles, k = 2 high), ql[64h + 32 + 4w ..] (k = 1, 3),
// qh[32h + 4w ..] bits 2k: elements 128h + 32k + 4w + i, scale 8h + 2k + w/4 (one byte of the u16 at 8h + 2k).
template <>
struct GemvUnit<GgmlType::Q6_K> {
  static constexpr int kQK = kQKK, kBytes = 210, kParts = 16, kE = 16, kAlign = 2, kChunk = 1024;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t ql0, ql1, qh, sc[4], d;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    const int h = p / 8, w = p % 8;
    Raw r;
    r.ql0 = ld_u32_a2(b + 64 * h + 4 * w);
    r.ql1 = ld_u32_a2(b + 64 * h + 32 + 4 * w);
    r.qh = ld_u32_a2(b + 128 + 32 * h + 4 * w);
#pragma unroll
    for (int k = 0; k < 4; ++k) r.sc[k] = ld_u16(b + 192 + 8 * h + 2 * k);
    r.d = ld_u16(b + 208);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float*) {
    const float d = half_bits_to_float(r.d);
    const int w4 = (p % 8) / 4;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      sc[k] = d * static_cast<float>(static_cast<int8_t>((r.sc[k] >> (8 * w4)) & 0xffu));
      const uint32_t low = (((k % 2) ? r.ql1 : r.ql0) >> (4 * (k / 2))) & 0x0f0f0f0fu;
      u8x4_to_float(low | (((r.qh >> (2 * k)) & 0x03030303u) << 4), 32.0f, q + 4 * k);
    }
  }
  static __device__ __forceinline__ int x_off(int p, int k) { return 128 * (p / 8) + 32 * k + 4 * (p % 8); }
};

// IQ4_XS: part p = 4g + s holds qs[16g + 4s .. +3]: elements 32g + 4s + i (low nibbles), 32g + 16 + 4s + i (high).
template <>
struct GemvUnit<GgmlType::IQ4_XS> {
  static constexpr int kQK = kQKK, kBytes = 136, kParts = 32, kE = 8, kAlign = 8, kChunk = 1024;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t h0, h1, qs;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    if (aligned) {
      const uint2 u = *reinterpret_cast<const uint2*>(b);
      r.h0 = u.x, r.h1 = u.y;
    } else {
      r.h0 = ld_u32_a2(b), r.h1 = ld_u32_a2(b + 4);
    }
    r.qs = lds_u32(b + 8 + 16 * (p / 4) + 4 * (p % 4), aligned);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, float* q, float* sc, float*) {
    const int g = p / 4;
    const uint32_t ls = ((r.h1 >> (8 * (g / 2) + 4 * (g % 2))) & 15u) | (((r.h0 >> (16 + 2 * g)) & 3u) << 4);
    sc[0] = sc[1] = half_bits_to_float(r.h0) * static_cast<float>(static_cast<int>(ls) - 32);
    s8x4_to_float(iq4_lookup4(r.qs & 0x0f0f0f0fu), q);
    s8x4_to_float(iq4_lookup4((r.qs >> 4) & 0x0f0f0f0fu), q + 4);
  }
  static __device__ __forceinline__ int x_off(int p, int j) { return 32 * (p / 4) + 16 * j + 4 * (p % 4); }
};

}  // namespace ferry::cuda::detail
