// Decoding of GGUF metadata values for printing: a fixed-size scalar (or one element of an array of them) becomes an
// unsigned integer, a signed integer, a double or a bool, so `info` can print every value type without a switch over
// thirteen cases at each use. Floats are widened to double exactly (FLOAT32 -> double is lossless).
#pragma once

#include <bit>
#include <cstdint>
#include <variant>

#include "ferry/error.hpp"
#include "ferry/gguf_value.hpp"

namespace ferry::cli {

// A FLOAT32 keeps its own alternative so the text form can print the shortest float that round-trips ("1e-05", not
// the double expansion of the nearest float).
struct Float32 {
  float value;
};
using Scalar = std::variant<uint64_t, int64_t, Float32, double, bool>;

// `bits` holds the value's little-endian bytes in its low value_type_size(type) bytes.
inline Scalar decode_scalar(GgufValueType type, uint64_t bits) {
  switch (type) {
    case GgufValueType::UINT8:
      return uint64_t{static_cast<uint8_t>(bits)};
    case GgufValueType::UINT16:
      return uint64_t{static_cast<uint16_t>(bits)};
    case GgufValueType::UINT32:
      return uint64_t{static_cast<uint32_t>(bits)};
    case GgufValueType::UINT64:
      return bits;
    case GgufValueType::INT8:
      return int64_t{static_cast<int8_t>(static_cast<uint8_t>(bits))};
    case GgufValueType::INT16:
      return int64_t{static_cast<int16_t>(static_cast<uint16_t>(bits))};
    case GgufValueType::INT32:
      return int64_t{static_cast<int32_t>(static_cast<uint32_t>(bits))};
    case GgufValueType::INT64:
      return static_cast<int64_t>(bits);
    case GgufValueType::FLOAT32:
      return Float32{std::bit_cast<float>(static_cast<uint32_t>(bits))};
    case GgufValueType::FLOAT64:
      return std::bit_cast<double>(bits);
    case GgufValueType::BOOL:
      return (bits & 0xff) != 0;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
      break;
  }
  fail(ErrorCategory::INTERNAL, "decode_scalar called for value type " + value_type_name(type));
}

// Element i of an array of fixed-size values (i < array_size()), as little-endian bits.
inline uint64_t array_element_bits(const GgufValue& value, uint64_t i) {
  const uint32_t size = value_type_size(value.array_type());
  const uint8_t* p = value.array_bytes().data() + i * size;
  uint64_t bits = 0;
  for (uint32_t b = 0; b < size; ++b) bits |= uint64_t{p[b]} << (8 * b);
  return bits;
}

}  // namespace ferry::cli
