// fp16 / bf16 conversions (ferry/half.hpp), checked exhaustively over all 65536 16-bit patterns against oracles written
// here from the IEEE definitions (double arithmetic and searches, no bit tricks shared with the code under test).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "ferry/half.hpp"

namespace ferry {
namespace {

// Value of a binary16 pattern from its definition. For the exponent field 31 it returns +-65536 (2^16), the value the
// next binade would start at: the rounding threshold for overflow. NaN/infinity handling is tested separately.
double half_value(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 31;
  const int mant = h & 1023;
  if (exp == 0) return sign * std::ldexp(static_cast<double>(mant), -24);
  return sign * std::ldexp(static_cast<double>(1024 + mant), exp - 25);
}

bool half_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }
float float_of(uint32_t u) { return std::bit_cast<float>(u); }

// Round-to-nearest-even of a finite float to binary16 by search: the largest non-negative half not above |f|, then
// the nearer of it and its successor (ties to the even pattern); |f| >= 65520 rounds to infinity.
uint16_t oracle_fp16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  int lo = 0, hi = 0x7c00;  // invariant: half_value(lo) <= a < half_value(hi) (hi = 0x7c00 reads as 65536)
  if (a >= half_value(0x7c00)) return static_cast<uint16_t>(sign | 0x7c00u);
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (half_value(static_cast<uint16_t>(mid)) <= a)
      lo = mid;
    else
      hi = mid;
  }
  const double down = a - half_value(static_cast<uint16_t>(lo));
  const double up = half_value(static_cast<uint16_t>(hi)) - a;
  const int pick = down < up ? lo : up < down ? hi : (lo % 2 == 0 ? lo : hi);
  return static_cast<uint16_t>(sign | pick);
}

// The same for bfloat16, whose patterns are the top halves of float32 patterns.
uint16_t oracle_bf16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t lo = (u & 0x7fffffffu) >> 16;
  if (std::isinf(f)) return static_cast<uint16_t>(sign | 0x7f80u);
  const double a = std::fabs(static_cast<double>(f));
  const double down = a - std::fabs(static_cast<double>(float_of(lo << 16)));
  // The successor of the largest finite bf16 (0x7f7f) is where the next binade would begin: 2^128.
  const double next =
      lo + 1 == 0x7f80u ? std::ldexp(1.0, 128) : std::fabs(static_cast<double>(float_of((lo + 1) << 16)));
  const double up = next - a;
  const uint32_t pick = down < up ? lo : up < down ? lo + 1 : (lo % 2 == 0 ? lo : lo + 1);
  return static_cast<uint16_t>(sign | pick);
}

TEST_CASE("fp16_to_fp32 is exact for all 65536 patterns") {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    CAPTURE(i);
    const float f = fp16_to_fp32(h);
    if (half_is_nan(h)) {
      REQUIRE(std::isnan(f));
      REQUIRE(std::signbit(f) == ((h >> 15) != 0));
      REQUIRE(((bits_of(f) >> 13) & 0x3ffu) == ((h & 0x3ffu) | 0x200u));  // payload kept, quiet bit set
    } else if ((h & 0x7fffu) == 0x7c00u) {
      REQUIRE(std::isinf(f));
      REQUIRE(std::signbit(f) == ((h >> 15) != 0));
    } else {
      REQUIRE(static_cast<double>(f) == half_value(h));
      REQUIRE(std::signbit(f) == ((h >> 15) != 0));  // -0 stays -0
    }
  }
}

TEST_CASE("fp32_to_fp16 inverts fp16_to_fp32 for every non-NaN pattern; NaN stays NaN") {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    CAPTURE(i);
    const uint16_t back = fp32_to_fp16(fp16_to_fp32(h));
    if (half_is_nan(h)) {
      REQUIRE(half_is_nan(back));
      REQUIRE((back & 0x8000u) == (h & 0x8000u));
    } else {
      REQUIRE(back == h);
    }
  }
}

TEST_CASE("fp32_to_fp16 rounds to nearest even at every midpoint between neighbouring halves") {
  // For each pair of neighbours (h, h + 1), both signs: the midpoint (exact in float: 12 significant bits) must go to
  // the even pattern, one float ulp below to h, one above to h + 1. Covers subnormals, the normal boundary and the
  // overflow threshold 65520 (between 65504 and the virtual 65536).
  for (uint32_t i = 0; i < 0x7c00; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const double mid = 0.5 * (half_value(h) + half_value(static_cast<uint16_t>(h + 1)));
    const auto mf = static_cast<float>(mid);
    REQUIRE(static_cast<double>(mf) == mid);
    for (const float s : {1.0f, -1.0f}) {
      CAPTURE(i);
      CAPTURE(s);
      const uint16_t sign = s < 0 ? 0x8000u : 0u;
      const uint16_t even = (h % 2 == 0) ? h : static_cast<uint16_t>(h + 1);
      CHECK(fp32_to_fp16(s * mf) == (sign | even));
      CHECK(fp32_to_fp16(s * std::nextafter(mf, 0.0f)) == (sign | h));
      CHECK(fp32_to_fp16(s * std::nextafter(mf, INFINITY)) == (sign | (h + 1)));
      CHECK(fp32_to_fp16(s * static_cast<float>(half_value(h))) == (sign | h));
    }
  }
}

TEST_CASE("fp32_to_fp16 agrees with the search oracle on a sweep of float32 patterns") {
  // 2^32 / 9973 ~ 430k patterns spread over every exponent, plus the whole float range near the half range's ends.
  for (uint64_t u = 0; u < (1ull << 32); u += 9973) {
    const float f = float_of(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    CAPTURE(u);
    REQUIRE(fp32_to_fp16(f) == oracle_fp16(f));
  }
  for (uint32_t u = 0x477f0000u; u < 0x47810000u; ++u) REQUIRE(fp32_to_fp16(float_of(u)) == oracle_fp16(float_of(u)));
  for (uint32_t u = 0x32f00000u; u < 0x33900000u; u += 7)
    REQUIRE(fp32_to_fp16(float_of(u)) == oracle_fp16(float_of(u)));
}

TEST_CASE("fp16 known values") {
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.0f) == 0xc000);
  CHECK(fp32_to_fp16(0.1f) == 0x2e66);
  CHECK(fp32_to_fp16(1.0f / 3.0f) == 0x3555);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(fp32_to_fp16(65519.996f) == 0x7bff);
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);  // tie between 65504 (odd) and 65536: rounds up, to infinity
  CHECK(fp32_to_fp16(1e9f) == 0x7c00);
  CHECK(fp32_to_fp16(-INFINITY) == 0xfc00);
  CHECK(fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);                // smallest subnormal
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);                // tie with 0: even
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);                // tie between 1 and 2 subnormal ulps: even
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -14)) == 0x0400);                // smallest normal
  CHECK(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);         // tie: even
  CHECK(fp32_to_fp16(1.0f + 3.0f * std::ldexp(1.0f, -11)) == 0x3c02);  // tie: even (up)
  CHECK(half_is_nan(fp32_to_fp16(std::nanf(""))));
  CHECK(fp16_to_fp32(0x7bff) == 65504.0f);
  CHECK(fp16_to_fp32(0x0001) == std::ldexp(1.0f, -24));
  CHECK(fp16_to_fp32(0xbc00) == -1.0f);
}

TEST_CASE("bf16: exact widening, round trip and rounding over all 65536 patterns") {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto b = static_cast<uint16_t>(i);
    CAPTURE(i);
    const float f = bf16_to_fp32(b);
    REQUIRE(bits_of(f) == (i << 16));  // widening keeps every bit, NaN payloads included
    const uint16_t back = fp32_to_bf16(f);
    if (std::isnan(f)) {
      REQUIRE(back == (b | 0x40u));  // quieted, payload and sign kept
      continue;
    }
    REQUIRE(back == b);
    if ((b & 0x7fffu) >= 0x7f80u) continue;  // infinity: no successor
    // Midpoint to the successor, and one float ulp either side of it.
    const uint32_t mid = (i << 16) | 0x8000u;
    const uint16_t even = (b % 2 == 0) ? b : static_cast<uint16_t>(b + 1);
    REQUIRE(fp32_to_bf16(float_of(mid)) == even);
    REQUIRE(fp32_to_bf16(float_of(mid - 1)) == b);
    REQUIRE(fp32_to_bf16(float_of(mid + 1)) == static_cast<uint16_t>(b + 1));
  }
  for (uint64_t u = 0; u < (1ull << 32); u += 9973) {
    const float f = float_of(static_cast<uint32_t>(u));
    if (std::isnan(f)) continue;
    CAPTURE(u);
    REQUIRE(fp32_to_bf16(f) == oracle_bf16(f));
  }
  CHECK(fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(fp32_to_bf16(float_of(0x3f808000u)) == 0x3f80);  // tie: even
  CHECK(fp32_to_bf16(float_of(0x3f818000u)) == 0x3f82);  // tie: even (up)
  CHECK(fp32_to_bf16(float_of(0x7f7fffffu)) == 0x7f80);  // largest float rounds past the largest bf16: infinity
  CHECK(fp32_to_bf16(float_of(0x7fa00001u)) == 0x7fe0);  // signalling NaN: quieted
  CHECK(fp32_to_bf16(-0.0f) == 0x8000);
}

}  // namespace
}  // namespace ferry
