// IEEE binary16 and bfloat16 conversions on the host. Round-to-nearest-even in both directions where rounding
// happens; NaN stays NaN (quiet), infinities saturate to infinity. These are the bit-exact conversions every CPU path
// and every test oracle uses, so they must agree with hardware conversion (__float2half_rn) on the GPU.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

namespace ferry {

inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: value = mant * 2^-24, exact in float32
      float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
      bits = std::bit_cast<uint32_t>(f) | sign;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    // value / 2^-24 rounded to nearest even; float arithmetic does the rounding exactly here.
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;  // exact: power-of-two scale
    const float rounded = __builtin_nearbyintf(scaled);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded));
  }
  // normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even (carry into the exponent is correct)
  uint32_t h = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

inline float bf16_to_fp32(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace ferry
