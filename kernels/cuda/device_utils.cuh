// Device helpers shared by the dequantization and GEMV kernels: loads from 2-byte-aligned GGUF blocks, exact small
// integer to float conversion without the (quarter-rate) I2F unit, the IQ4 codebook without a memory lookup, and the
// launch geometry cache. Internal to kernels/cuda.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ferry/kernels/block_layouts.hpp"

namespace ferry::cuda::detail {

// ---- loads ------------------------------------------------------------------------------------------------------
// GGUF blocks of 18, 22, 34, 110 and 210 bytes put every field at a 2-byte boundary only, so a 32-bit field is read
// as two 16-bit halves. `p` may point to global or shared memory (generic address).
__device__ __forceinline__ uint32_t ld_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t* p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }
__device__ __forceinline__ uint32_t ld_u32_a4(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Read-only global loads through the non-coherent path: the weights never change during a kernel.
__device__ __forceinline__ uint32_t ldg_u16(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned short*>(p));
}
__device__ __forceinline__ uint32_t ldg_u32_a2(const uint8_t* p) { return ldg_u16(p) | (ldg_u16(p + 2) << 16); }
__device__ __forceinline__ uint32_t ldg_u32_a4(const uint8_t* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}
// `aligned` is uniform across the warp (a property of the whole matrix), so the branch costs nothing.
__device__ __forceinline__ uint32_t ldg_u32(const uint8_t* p, bool aligned) {
  return aligned ? ldg_u32_a4(p) : ldg_u32_a2(p);
}

// ---- conversions ------------------------------------------------------------------------------------------------
__device__ __forceinline__ float half_bits_to_float(uint32_t bits) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
}
__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits) { return __uint_as_float((bits & 0xffffu) << 16); }

// Byte i (0..3) of w as an exact float, minus `bias`: 0x4B000000 | b is the float 2^23 + b, so one PRMT and one FADD
// replace an I2F (which runs at a quarter of the FP32 rate on sm_80/sm_90). Exact for any b < 2^23.
template <int kByte>
__device__ __forceinline__ float byte_to_float(uint32_t w, float bias) {
  const uint32_t bits = __byte_perm(w, 0x4B00u, 0x5440u | kByte);
  return __uint_as_float(bits) - (8388608.0f + bias);
}
// The four signed bytes of w as floats: flipping the sign bit maps int8 q to the unsigned q + 128.
__device__ __forceinline__ void s8x4_to_float(uint32_t w, float* out) {
  const uint32_t u = w ^ 0x80808080u;
  out[0] = byte_to_float<0>(u, 128.0f);
  out[1] = byte_to_float<1>(u, 128.0f);
  out[2] = byte_to_float<2>(u, 128.0f);
  out[3] = byte_to_float<3>(u, 128.0f);
}
__device__ __forceinline__ void u8x4_to_float(uint32_t w, float bias, float* out) {
  out[0] = byte_to_float<0>(w, bias);
  out[1] = byte_to_float<1>(w, bias);
  out[2] = byte_to_float<2>(w, bias);
  out[3] = byte_to_float<3>(w, bias);
}

// ---- IQ4 codebook -------------------------------------------------------------------------------------------------
// kIq4nlValues packed four int8 per word. A PRMT selects bytes with a 3-bit index from a pair of words, so entries
// 0-7 come from (k0, k1) and 8-15 from (k2, k3): no constant- or shared-memory lookup, which would serialise on
// divergent indices.
inline constexpr uint32_t pack_s8x4(int a, int b, int c, int d) {
  return (static_cast<uint32_t>(a) & 0xffu) | ((static_cast<uint32_t>(b) & 0xffu) << 8) |
         ((static_cast<uint32_t>(c) & 0xffu) << 16) | ((static_cast<uint32_t>(d) & 0xffu) << 24);
}
inline constexpr uint32_t kIq4k0 = pack_s8x4(kIq4nlValues[0], kIq4nlValues[1], kIq4nlValues[2], kIq4nlValues[3]);
inline constexpr uint32_t kIq4k1 = pack_s8x4(kIq4nlValues[4], kIq4nlValues[5], kIq4nlValues[6], kIq4nlValues[7]);
inline constexpr uint32_t kIq4k2 = pack_s8x4(kIq4nlValues[8], kIq4nlValues[9], kIq4nlValues[10], kIq4nlValues[11]);
inline constexpr uint32_t kIq4k3 = pack_s8x4(kIq4nlValues[12], kIq4nlValues[13], kIq4nlValues[14], kIq4nlValues[15]);

// Four nibbles, one in the low 4 bits of each byte of `nib` (the rest zero), to their four int8 codebook values.
__device__ __forceinline__ uint32_t iq4_lookup4(uint32_t nib) {
  const uint32_t s = nib | (nib >> 4);
  const uint32_t sel = (s & 0xffu) | ((s >> 8) & 0xff00u);  // n0 | n1 << 4 | n2 << 8 | n3 << 12
  const uint32_t lo = __byte_perm(kIq4k0, kIq4k1, sel & 0x7777u);
  const uint32_t hi = __byte_perm(kIq4k2, kIq4k3, sel & 0x7777u);
  return __byte_perm(lo, hi, 0x3210u | ((sel & 0x8888u) >> 1));
}
// One nibble to its value (dequantization decodes element by element).
__device__ __forceinline__ int iq4_value(uint32_t n) {
  const uint32_t lo = __byte_perm(kIq4k0, kIq4k1, n & 7u);
  const uint32_t hi = __byte_perm(kIq4k2, kIq4k3, n & 7u);
  return static_cast<int8_t>(((n & 8u) ? hi : lo) & 0xffu);
}

}  // namespace ferry::cuda::detail
