// Per-type units of the int8-activation GEMV (gemv_i8_kernel.cuh; design note: gemv.cu) for Q4_0, Q4_1, Q8_0, Q4_K,
// Q5_K and Q6_K.
// A unit is the part of one block that one lane handles per step, as in gemv_units.cuh, but its quants stay packed
// as 4 int8 codes per 32-bit word so __dp4a multiplies them with 4 int8 activations at once.
//
// Interface of GemvI8Unit<type>:
//   kQK, kBytes, kParts, kAlign, kChunk   as GemvUnit (a chunk is whole warp steps; kChunk elements per stage)
//   kRuns, kRunLen  the unit's codes form kRuns runs of kRunLen words; run j multiplies the x words
//                   x_word(part, j) .. + kRunLen - 1 of the block, all inside the 32-element x group x_group(part, j)
//   kHasMin         run j adds m[j] · (the group's d_x · Σ q_x)
//   Raw, load()     the unit's bytes (read from the staged block in shared memory)
//   decode(raw, part, q, d, m)   q[j][i]: 4 signed int8 codes (0..15 and 0..63 codes are non-negative int8 too);
//                   run j contributes d[j] · d_x · Σ dp4a(q[j][i], x_q) + m[j] · d_x · Σ_group x_q
// An additive offset or min that is constant over a 32-element group moves into the m term (its share of the group:
// a unit that covers half a group takes half of it), so no code needs re-centring; Q6_K's scales change every 16
// elements, so its codes are re-centred to int8 instead.
#pragma once

#include "device_utils.cuh"
#include "ferry/ggml_type.hpp"
#include "gemv_units.cuh"

namespace ferry::cuda::detail {

template <GgmlType kType>
struct GemvI8Unit;

// Q4_0: one lane per block. qs word i: low nibbles are elements 4i .. 4i+3 (x word i), high nibbles 16 + 4i .. (x
// word 4 + i). w = d·(q - 8): the -8·d·Σx term is split over the two runs.
template <>
struct GemvI8Unit<GgmlType::Q4_0> {
  static constexpr int kQK = kQK4, kBytes = 18, kParts = 1, kAlign = 2, kChunk = 1024, kRuns = 2, kRunLen = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t d, qs[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool) {
    Raw r;
    r.d = ld_u16(b);
#pragma unroll
    for (int i = 0; i < 4; ++i) r.qs[i] = ld_u32_a2(b + 2 + 4 * i);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, int (&q)[2][4], float* d, float* m) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[0][i] = static_cast<int>(r.qs[i] & 0x0f0f0f0fu);
      q[1][i] = static_cast<int>((r.qs[i] >> 4) & 0x0f0f0f0fu);
    }
    d[0] = d[1] = half_bits_to_float(r.d);
    m[0] = m[1] = -4.0f * d[0];
  }
  static __device__ __forceinline__ int x_word(int, int j) { return 4 * j; }
  static __device__ __forceinline__ int x_group(int, int) { return 0; }
};

// Q4_1: one lane per block, codes as Q4_0's. w = d·q + m: the m·Σx term (m·d_x·Σq_x over the block's one group) is
// split over the two runs.
template <>
struct GemvI8Unit<GgmlType::Q4_1> {
  static constexpr int kQK = kQK4, kBytes = 20, kParts = 1, kAlign = 2, kChunk = 1024, kRuns = 2, kRunLen = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t d, m, qs[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int, bool) {
    Raw r;
    r.d = ld_u16(b);
    r.m = ld_u16(b + 2);
#pragma unroll
    for (int i = 0; i < 4; ++i) r.qs[i] = ld_u32_a2(b + 4 + 4 * i);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, int (&q)[2][4], float* d, float* m) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[0][i] = static_cast<int>(r.qs[i] & 0x0f0f0f0fu);
      q[1][i] = static_cast<int>((r.qs[i] >> 4) & 0x0f0f0f0fu);
    }
    d[0] = d[1] = half_bits_to_float(r.d);
    m[0] = m[1] = 0.5f * half_bits_to_float(r.m);
  }
  static __device__ __forceinline__ int x_word(int, int j) { return 4 * j; }
  static __device__ __forceinline__ int x_group(int, int) { return 0; }
};

// Q8_0: two lanes per block, part p holds qs[16p .. 16p + 15] (x words 4p .. 4p + 3).
template <>
struct GemvI8Unit<GgmlType::Q8_0> {
  static constexpr int kQK = kQK4, kBytes = 34, kParts = 2, kAlign = 2, kChunk = 512, kRuns = 1, kRunLen = 4;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t d, qs[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    Raw r;
    r.d = ld_u16(b);
#pragma unroll
    for (int i = 0; i < 4; ++i) r.qs[i] = ld_u32_a2(b + 2 + 16 * p + 4 * i);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int, int (&q)[1][4], float* d, float*) {
#pragma unroll
    for (int i = 0; i < 4; ++i) q[0][i] = static_cast<int>(r.qs[i]);
    d[0] = half_bits_to_float(r.d);
  }
  static __device__ __forceinline__ int x_word(int p, int) { return 4 * p; }
  static __device__ __forceinline__ int x_group(int, int) { return 0; }
};

// Q4_K: eight lanes per super-block, part p = 2c + h holds qs[32c + 16h .. + 15]: low nibbles are elements
// 64c + 16h + 0..15 (group 2c), high nibbles 64c + 32 + 16h + 0..15 (group 2c + 1). w = d·sc·q - dmin·m per group; a
// unit covers half of each of its two groups, so it takes half of each min term.
template <>
struct GemvI8Unit<GgmlType::Q4_K> {
  static constexpr int kQK = kQKK, kBytes = 144, kParts = 8, kAlign = 16, kChunk = 1024, kRuns = 2, kRunLen = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t h[4], qs[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    lds_16bytes(b, aligned, r.h);
    lds_16bytes(b + 16 + 16 * p, aligned, r.qs);  // 32c + 16h = 16p
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, int (&q)[2][4], float* d, float* m) {
    float ml0, ml1;
    k4_group_pair(r.h, p / 2, d[0], ml0, d[1], ml1);
    m[0] = -0.5f * ml0;
    m[1] = -0.5f * ml1;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      q[0][i] = static_cast<int>(r.qs[i] & 0x0f0f0f0fu);
      q[1][i] = static_cast<int>((r.qs[i] >> 4) & 0x0f0f0f0fu);
    }
  }
  static __device__ __forceinline__ int x_word(int p, int j) { return 16 * (p / 2) + 8 * j + 4 * (p % 2); }
  static __device__ __forceinline__ int x_group(int p, int j) { return 2 * (p / 2) + j; }
};

// Q5_K: Q4_K's lanes, groups and scales, each code with its fifth bit: part p = 2c + h also holds qh[16h .. 16h + 15]
// (the bytes of the same l = 16h + 0..15 in every 64-element chunk); bit 2c of qh[l] tops the low nibble (group 2c),
// bit 2c + 1 the high one. Codes 0..31.
template <>
struct GemvI8Unit<GgmlType::Q5_K> {
  static constexpr int kQK = kQKK, kBytes = 176, kParts = 8, kAlign = 16, kChunk = 1024, kRuns = 2, kRunLen = 4;
  static constexpr bool kHasMin = true;
  struct Raw {
    uint32_t h[4], qh[4], qs[4];
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool aligned) {
    Raw r;
    lds_16bytes(b, aligned, r.h);
    lds_16bytes(b + 16 + 16 * (p % 2), aligned, r.qh);
    lds_16bytes(b + 48 + 16 * p, aligned, r.qs);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, int (&q)[2][4], float* d, float* m) {
    const int c = p / 2;
    float ml0, ml1;
    k4_group_pair(r.h, c, d[0], ml0, d[1], ml1);
    m[0] = -0.5f * ml0;
    m[1] = -0.5f * ml1;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t lo_bit = ((r.qh[i] >> (2 * c)) & 0x01010101u) << 4;
      const uint32_t hi_bit = ((r.qh[i] >> (2 * c + 1)) & 0x01010101u) << 4;
      q[0][i] = static_cast<int>((r.qs[i] & 0x0f0f0f0fu) | lo_bit);
      q[1][i] = static_cast<int>(((r.qs[i] >> 4) & 0x0f0f0f0fu) | hi_bit);
    }
  }
  static __device__ __forceinline__ int x_word(int p, int j) { return 16 * (p / 2) + 8 * j + 4 * (p % 2); }
  static __device__ __forceinline__ int x_group(int p, int j) { return 2 * (p / 2) + j; }
};

// Q6_K: eight lanes per super-block, part p = 4h + v holds, for w = 2v and 2v + 1, ql[64h + 4w ..] (k = 0 low
// nibbles, k = 2 high), ql[64h + 32 + 4w ..] (k = 1, 3) and qh[32h + 4w ..] bits 2k: elements 128h + 32k + 4w + i,
// scale 8h + 2k + v / 2 (the same for both w). Codes 0..63 become q - 32 in int8 per byte: (c + 96) ^ 128 never
// carries into the next byte.
template <>
struct GemvI8Unit<GgmlType::Q6_K> {
  static constexpr int kQK = kQKK, kBytes = 210, kParts = 8, kAlign = 2, kChunk = 1024, kRuns = 4, kRunLen = 2;
  static constexpr bool kHasMin = false;
  struct Raw {
    uint32_t ql0[2], ql1[2], qh[2], sc[4], d;
  };
  static __device__ __forceinline__ Raw load(const uint8_t* b, int p, bool) {
    const int h = p / 4, v = p % 4;
    Raw r;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      r.ql0[i] = ld_u32_a2(b + 64 * h + 8 * v + 4 * i);
      r.ql1[i] = ld_u32_a2(b + 64 * h + 32 + 8 * v + 4 * i);
      r.qh[i] = ld_u32_a2(b + 128 + 32 * h + 8 * v + 4 * i);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) r.sc[k] = ld_u16(b + 192 + 8 * h + 2 * k);
    r.d = ld_u16(b + 208);
    return r;
  }
  static __device__ __forceinline__ void decode(const Raw& r, int p, int (&q)[4][2], float* d, float*) {
    const float dd = half_bits_to_float(r.d);
    const int v2 = (p % 4) / 2;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      d[k] = dd * static_cast<float>(static_cast<int8_t>((r.sc[k] >> (8 * v2)) & 0xffu));
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const uint32_t low = (((k % 2) ? r.ql1[i] : r.ql0[i]) >> (4 * (k / 2))) & 0x0f0f0f0fu;
        const uint32_t code = low | (((r.qh[i] >> (2 * k)) & 0x03030303u) << 4);
        q[k][i] = static_cast<int>((code + 0x60606060u) ^ 0x80808080u);
      }
    }
  }
  static __device__ __forceinline__ int x_word(int p, int k) { return 32 * (p / 4) + 8 * k + 2 * (p % 4); }
  static __device__ __forceinline__ int x_group(int p, int k) { return 4 * (p / 4) + k; }
};

}  // namespace ferry::cuda::detail
