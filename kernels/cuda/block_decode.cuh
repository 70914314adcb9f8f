// Exact per-block decoders for the dequantization kernels: chunk c of a block is its elements 8c .. 8c + 7, computed
// in float with the same operation order as ferry::ref::dequantize (kernels/ref/quants_dequantize.cpp) and with every
// product and sum rounded separately (__fmul_rn / __fadd_rn / __fsub_rn: nvcc would otherwise fuse them into FMAs,
// which skip a rounding). So each value is bit-identical to the reference float, and its FP16 / BF16 conversion
// (round to nearest even, as the host fp32_to_fp16 / fp32_to_bf16) is bit-identical too.
//
// `b` points at the block in shared memory; blocks sit at multiples of their size from a 16-byte-aligned tile, so
// only 2-byte alignment is assumed unless the block size guarantees more (noted per type).
#pragma once

#include "device_utils.cuh"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/block_layouts.hpp"

namespace ferry::cuda::detail {

template <GgmlType kType>
struct BlockDecoder;

// Two 32-bit words holding bytes p[0..7], p 2-byte aligned.
__device__ __forceinline__ void ld_8bytes(const uint8_t* p, uint32_t& a, uint32_t& b) {
  a = ld_u32_a2(p);
  b = ld_u32_a2(p + 4);
}

// Writes v[i] = d * (byte_i - bias) for the 8 bytes in (a, b).
__device__ __forceinline__ void scale_bytes(uint32_t a, uint32_t b, float d, float bias, float* v) {
  float q[8];
  u8x4_to_float(a, bias, q);
  u8x4_to_float(b, bias, q + 4);
#pragma unroll
  for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(d, q[i]);
}

template <>
struct BlockDecoder<GgmlType::Q4_0> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockQ4_0);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    uint32_t x, y;
    ld_8bytes(b + 2 + 8 * (c & 1), x, y);  // chunks 0,1: low nibbles of bytes 0-15; chunks 2,3: high nibbles
    const int shift = 4 * (c >> 1);
    scale_bytes((x >> shift) & 0x0f0f0f0fu, (y >> shift) & 0x0f0f0f0fu, d, 8.0f, v);
  }
};

template <>
struct BlockDecoder<GgmlType::Q4_1> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockQ4_1);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const float m = half_bits_to_float(ld_u16(b + 2));
    uint32_t x, y;
    ld_8bytes(b + 4 + 8 * (c & 1), x, y);
    const int shift = 4 * (c >> 1);
    scale_bytes((x >> shift) & 0x0f0f0f0fu, (y >> shift) & 0x0f0f0f0fu, d, 0.0f, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fadd_rn(v[i], m);
  }
};

// Spreads bits 0..3 of h to bit 4 of bytes 0..3 (the fifth bit of four Q5 quants).
__device__ __forceinline__ uint32_t spread_bits_to_bit4(uint32_t h) {
  return ((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25);
}

template <>
struct BlockDecoder<GgmlType::Q5_0> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockQ5_0);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const uint32_t qh = ld_u32_a2(b + 2) >> (8 * c);  // element 8c + i has its fifth bit at qh bit 8c + i
    uint32_t x, y;
    ld_8bytes(b + 6 + 8 * (c & 1), x, y);
    const int shift = 4 * (c >> 1);
    x = ((x >> shift) & 0x0f0f0f0fu) | spread_bits_to_bit4(qh & 15u);
    y = ((y >> shift) & 0x0f0f0f0fu) | spread_bits_to_bit4((qh >> 4) & 15u);
    scale_bytes(x, y, d, 16.0f, v);
  }
};

template <>
struct BlockDecoder<GgmlType::Q5_1> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockQ5_1);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const float m = half_bits_to_float(ld_u16(b + 2));
    const uint32_t qh = ld_u32_a2(b + 4) >> (8 * c);
    uint32_t x, y;
    ld_8bytes(b + 8 + 8 * (c & 1), x, y);
    const int shift = 4 * (c >> 1);
    x = ((x >> shift) & 0x0f0f0f0fu) | spread_bits_to_bit4(qh & 15u);
    y = ((y >> shift) & 0x0f0f0f0fu) | spread_bits_to_bit4((qh >> 4) & 15u);
    scale_bytes(x, y, d, 0.0f, v);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fadd_rn(v[i], m);
  }
};

template <>
struct BlockDecoder<GgmlType::Q8_0> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockQ8_0);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    uint32_t x, y;
    ld_8bytes(b + 2 + 8 * c, x, y);
    float q[8];
    s8x4_to_float(x, q);
    s8x4_to_float(y, q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(d, q[i]);
  }
};

// Q2_K: element e = 128h + 32j + l is bits 2j of qs[32h + l]; chunk c has h = c / 16, j = (c / 4) % 4,
// l = 8 (c % 4) + i, and one scale byte (group c / 2).
template <>
struct BlockDecoder<GgmlType::Q2_K> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ2_K);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b + 80));
    const float dmin = half_bits_to_float(ld_u16(b + 82));
    const uint32_t s = b[c / 2];
    const float dl = __fmul_rn(d, static_cast<float>(s & 15u));
    const float ml = __fmul_rn(dmin, static_cast<float>(s >> 4));
    uint32_t x, y;
    ld_8bytes(b + 16 + 32 * (c / 16) + 8 * (c % 4), x, y);
    const int shift = 2 * ((c / 4) % 4);
    float q[8];
    u8x4_to_float((x >> shift) & 0x03030303u, 0.0f, q);
    u8x4_to_float((y >> shift) & 0x03030303u, 0.0f, q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fsub_rn(__fmul_rn(dl, q[i]), ml);
  }
};

// Q3_K: as Q2_K for the low two bits; the high-mask bit 4h + j of hmask[l] set means +0, clear means -4.
template <>
struct BlockDecoder<GgmlType::Q3_K> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ3_K);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b + 108));
    const float dl = __fmul_rn(d, static_cast<float>(q3_k_scale(c / 2, b + 96) - 32));
    const int h = c / 16, j = (c / 4) % 4, l0 = 8 * (c % 4);
    uint32_t qx, qy, mx, my;
    ld_8bytes(b + 32 + 32 * h + l0, qx, qy);
    ld_8bytes(b + l0, mx, my);
    const int mbit = 4 * h + j;
    // low | (high << 2) is q + 4 in 0..7: a set mask bit adds 4, so (low + 4·bit) - 4 is the quant.
    const uint32_t x = ((qx >> (2 * j)) & 0x03030303u) | (((mx >> mbit) & 0x01010101u) << 2);
    const uint32_t y = ((qy >> (2 * j)) & 0x03030303u) | (((my >> mbit) & 0x01010101u) << 2);
    scale_bytes(x, y, dl, 4.0f, v);
  }
};

// Q4_K / Q5_K: group g = c / 4 of 32; chunk c reads qs[32 (g / 2) + 8 (c % 4) ..], low nibbles for even g.
template <>
struct BlockDecoder<GgmlType::Q4_K> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ4_K);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const float dmin = half_bits_to_float(ld_u16(b + 2));
    const int g = c / 4;
    uint8_t sc, m;
    k4_scale_min(g, b + 4, &sc, &m);
    const float dl = __fmul_rn(d, static_cast<float>(sc));
    const float ml = __fmul_rn(dmin, static_cast<float>(m));
    const uint8_t* qs = b + 16 + 32 * (g / 2) + 8 * (c % 4);  // 8-byte aligned: the block is 144 bytes
    const int shift = 4 * (g % 2);
    float q[8];
    u8x4_to_float((ld_u32_a4(qs) >> shift) & 0x0f0f0f0fu, 0.0f, q);
    u8x4_to_float((ld_u32_a4(qs + 4) >> shift) & 0x0f0f0f0fu, 0.0f, q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fsub_rn(__fmul_rn(dl, q[i]), ml);
  }
};

template <>
struct BlockDecoder<GgmlType::Q5_K> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ5_K);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const float dmin = half_bits_to_float(ld_u16(b + 2));
    const int g = c / 4;
    uint8_t sc, m;
    k4_scale_min(g, b + 4, &sc, &m);
    const float dl = __fmul_rn(d, static_cast<float>(sc));
    const float ml = __fmul_rn(dmin, static_cast<float>(m));
    const uint8_t* qh = b + 16 + 8 * (c % 4);  // 176-byte blocks: 16-byte aligned
    const uint8_t* qs = b + 48 + 32 * (g / 2) + 8 * (c % 4);
    const int shift = 4 * (g % 2);
    const uint32_t x = ((ld_u32_a4(qs) >> shift) & 0x0f0f0f0fu) | (((ld_u32_a4(qh) >> g) & 0x01010101u) << 4);
    const uint32_t y = ((ld_u32_a4(qs + 4) >> shift) & 0x0f0f0f0fu) | (((ld_u32_a4(qh + 4) >> g) & 0x01010101u) << 4);
    float q[8];
    u8x4_to_float(x, 0.0f, q);
    u8x4_to_float(y, 0.0f, q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fsub_rn(__fmul_rn(dl, q[i]), ml);
  }
};

// Q6_K: element 128h + 32k + l, low 4 bits from ql[64h + 32 (k % 2) + l] (high nibble for k >= 2), high 2 bits
// from qh[32h + l] >> 2k; chunk c has h = c / 16, k = (c / 4) % 4, l = 8 (c % 4) + i, scale index c / 2.
template <>
struct BlockDecoder<GgmlType::Q6_K> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockQ6_K);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b + 208));
    const float dl = __fmul_rn(d, static_cast<float>(static_cast<int8_t>(b[192 + c / 2])));
    const int h = c / 16, k = (c / 4) % 4, l0 = 8 * (c % 4);
    uint32_t lx, ly, hx, hy;
    ld_8bytes(b + 64 * h + 32 * (k % 2) + l0, lx, ly);
    ld_8bytes(b + 128 + 32 * h + l0, hx, hy);
    const int ls = 4 * (k / 2);
    const uint32_t x = ((lx >> ls) & 0x0f0f0f0fu) | (((hx >> (2 * k)) & 0x03030303u) << 4);
    const uint32_t y = ((ly >> ls) & 0x0f0f0f0fu) | (((hy >> (2 * k)) & 0x03030303u) << 4);
    scale_bytes(x, y, dl, 32.0f, v);
  }
};

template <>
struct BlockDecoder<GgmlType::IQ4_NL> {
  static constexpr int kElems = kQK4, kBytes = sizeof(BlockIQ4_NL);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    uint32_t x, y;
    ld_8bytes(b + 2 + 8 * (c & 1), x, y);
    const int shift = 4 * (c >> 1);
    float q[8];
    s8x4_to_float(iq4_lookup4((x >> shift) & 0x0f0f0f0fu), q);
    s8x4_to_float(iq4_lookup4((y >> shift) & 0x0f0f0f0fu), q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(d, q[i]);
  }
};

// IQ4_XS: group g = c / 4 reads qs[16g ..]; chunks 4g, 4g+1 are low nibbles of bytes 0-15, 4g+2, 4g+3 high nibbles.
template <>
struct BlockDecoder<GgmlType::IQ4_XS> {
  static constexpr int kElems = kQKK, kBytes = sizeof(BlockIQ4_XS);
  static __device__ __forceinline__ void decode8(const uint8_t* b, int c, float* v) {
    const float d = half_bits_to_float(ld_u16(b));
    const int g = c / 4;
    const int ls = iq4_xs_scale(g, *reinterpret_cast<const BlockIQ4_XS*>(b));
    const float dl = __fmul_rn(d, static_cast<float>(ls - 32));
    const uint8_t* qs = b + 8 + 16 * g + 8 * (c & 1);  // 136-byte blocks: 8-byte aligned
    const int shift = 4 * ((c >> 1) & 1);
    float q[8];
    s8x4_to_float(iq4_lookup4((ld_u32_a4(qs) >> shift) & 0x0f0f0f0fu), q);
    s8x4_to_float(iq4_lookup4((ld_u32_a4(qs + 4) >> shift) & 0x0f0f0f0fu), q + 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = __fmul_rn(dl, q[i]);
  }
};

}  // namespace ferry::cuda::detail
