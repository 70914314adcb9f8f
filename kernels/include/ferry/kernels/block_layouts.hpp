// Packed GGML block layouts, shared by the scalar reference, the CPU kernels and the CUDA kernels.
// Plain structs of bytes and uint16_t halves (no std:: types, no packing pragmas): every field is naturally aligned at
// its offset, so sizeof equals the on-disk size and an array of blocks can be read straight out of a mapped file.
// Alignment is 2 (the half fields), never more, because GGUF rows are not 4-byte aligned for 18-, 22- or 34-byte
// blocks. Halves are raw IEEE binary16 bits: use ferry::fp16_to_fp32 on the host, __half/__ushort_as_half on the GPU.
// Field meanings and element order: ../shared/docs/gguf.md and the helpers below.
#pragma once

#include <stdint.h>  // NOLINT(modernize-deprecated-headers): also included by nvcc's device pass

#if defined(__CUDACC__)
#define FERRY_HOST_DEVICE __host__ __device__
#else
#define FERRY_HOST_DEVICE
#endif

namespace ferry {

inline constexpr int kQK4 = 32;   // elements per block of the 32-element types (Q4_0 .. Q8_0, IQ4_NL)
inline constexpr int kQKK = 256;  // elements per super-block of the K-quants and IQ4_XS

// value = (nibble - 8) * d; byte j: element j (low nibble), element j + 16 (high nibble)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK4 / 2];
};
// value = nibble * d + m
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK4 / 2];
};
// value = (nibble | bit << 4) - 16) * d; bit j of the little-endian u32 in qh is element j's fifth bit.
// qh is bytes, not a uint32_t, so the block stays 2-aligned and 22 bytes.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK4 / 2];
};
// value = (nibble | bit << 4) * d + m
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK4 / 2];
};
// value = qs[j] * d
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK4];
};
// 16 groups of 16; scales[g]: low nibble scale, high nibble min; value = d * sc * q - dmin * m (q 2-bit)
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 groups of 16; 6-bit scales stored + 32 (see q3_k_scale); q = 2 low bits - (hmask bit ? 0 : 4)
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 groups of 32; 6-bit scale and min per group (see k4_scale_min); value = d * sc * q - dmin * m
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
// as Q4_K with a fifth bit from qh
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
// 16 groups of 16; q = (4 low bits | 2 high bits << 4) - 32; value = d * scales[g] * q
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};
// value = d * kIq4nlValues[nibble]; nibble order as Q4_0
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK4 / 2];
};
// 8 groups of 32; group scale ls (6 bits, see iq4_xs_scale); value = d * (ls - 32) * kIq4nlValues[nibble]
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQKK / 64];
  uint8_t qs[kQKK / 2];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);
static_assert(alignof(BlockQ4_0) == 2 && alignof(BlockQ6_K) == 2 && alignof(BlockIQ4_XS) == 2);

// The IQ4_NL / IQ4_XS non-linear codebook. CUDA code indexes it at run time, which a host constexpr array does not
// allow in device code: copy it into a __constant__ array there.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q4_K / Q5_K: the 6-bit scale and min of group j (0..7) from the 12 packed bytes.
FERRY_HOST_DEVICE inline void k4_scale_min(int j, const uint8_t* s, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
  }
}

// Q3_K: the stored 6-bit scale of group g (0..15), still offset by 32.
FERRY_HOST_DEVICE inline int q3_k_scale(int g, const uint8_t* scales) {
  const int low = g < 8 ? (scales[g] & 15) : (scales[g - 8] >> 4);
  const int high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
  return low | (high << 4);
}

// IQ4_XS: the 6-bit scale ls of group g (0..7), still offset by 32.
FERRY_HOST_DEVICE inline int iq4_xs_scale(int g, const BlockIQ4_XS& b) {
  return ((b.scales_l[g / 2] >> (4 * (g % 2))) & 15) | (((b.scales_h >> (2 * g)) & 3) << 4);
}

}  // namespace ferry
