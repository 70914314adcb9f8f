#include "ferry/gguf_value.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"

namespace ferry {

// Scalars are kept as their little-endian bits and copied with memcpy; GGUF files are little-endian, and so is every
// machine ferry targets (x86-64, aarch64). A big-endian port would have to byte-swap here and in the reader/writer.
static_assert(std::endian::native == std::endian::little, "ferry assumes a little-endian host");

namespace {

constexpr std::array<std::string_view, 13> kValueTypeNames = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",   "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64",
};

template <class T>
constexpr GgufValueType value_type_of() {
  if constexpr (std::is_same_v<T, bool>)
    return GgufValueType::BOOL;
  else if constexpr (std::is_same_v<T, uint8_t>)
    return GgufValueType::UINT8;
  else if constexpr (std::is_same_v<T, int8_t>)
    return GgufValueType::INT8;
  else if constexpr (std::is_same_v<T, uint16_t>)
    return GgufValueType::UINT16;
  else if constexpr (std::is_same_v<T, int16_t>)
    return GgufValueType::INT16;
  else if constexpr (std::is_same_v<T, uint32_t>)
    return GgufValueType::UINT32;
  else if constexpr (std::is_same_v<T, int32_t>)
    return GgufValueType::INT32;
  else if constexpr (std::is_same_v<T, uint64_t>)
    return GgufValueType::UINT64;
  else if constexpr (std::is_same_v<T, int64_t>)
    return GgufValueType::INT64;
  else if constexpr (std::is_same_v<T, float>)
    return GgufValueType::FLOAT32;
  else if constexpr (std::is_same_v<T, double>)
    return GgufValueType::FLOAT64;
  else
    static_assert(!sizeof(T), "no GGUF value type for this C++ type");
}

template <class T>
constexpr std::string_view cpp_type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "bool";
  else if constexpr (std::is_same_v<T, uint8_t>)
    return "uint8";
  else if constexpr (std::is_same_v<T, int8_t>)
    return "int8";
  else if constexpr (std::is_same_v<T, uint16_t>)
    return "uint16";
  else if constexpr (std::is_same_v<T, int16_t>)
    return "int16";
  else if constexpr (std::is_same_v<T, uint32_t>)
    return "uint32";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "int32";
  else if constexpr (std::is_same_v<T, uint64_t>)
    return "uint64";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "int64";
  else if constexpr (std::is_same_v<T, float>)
    return "float";
  else
    return "double";
}

bool is_signed_int(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

bool is_unsigned_int(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

// Sign-extends the stored bits of a signed integer of the given GGUF type.
int64_t signed_value(GgufValueType t, uint64_t bits) {
  switch (t) {
    case GgufValueType::INT8:
      return static_cast<int8_t>(static_cast<uint8_t>(bits));
    case GgufValueType::INT16:
      return static_cast<int16_t>(static_cast<uint16_t>(bits));
    case GgufValueType::INT32:
      return static_cast<int32_t>(static_cast<uint32_t>(bits));
    default:
      return static_cast<int64_t>(bits);
  }
}

// `where` is appended after `what` (e.g. ", element 3") so array errors name the element.
template <class T>
T convert_scalar(GgufValueType t, uint64_t bits, std::string_view what, const std::string& where) {
  const auto mismatch = [&]() -> std::string {
    return std::string(what) + where + ": has type " + value_type_name(t) + ", expected " +
           std::string(cpp_type_name<T>());
  };
  if constexpr (std::is_same_v<T, bool>) {
    if (t != GgufValueType::BOOL) fail(ErrorCategory::FORMAT, mismatch() + " (BOOL)");
    return bits != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (t == GgufValueType::FLOAT32) return static_cast<T>(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    if (t == GgufValueType::FLOAT64) return static_cast<T>(std::bit_cast<double>(bits));
    fail(ErrorCategory::FORMAT, mismatch() + " (FLOAT32 or FLOAT64)");
  } else {
    if (is_unsigned_int(t)) {
      if (std::in_range<T>(bits)) return static_cast<T>(bits);
      fail(ErrorCategory::FORMAT, std::string(what) + where + ": value " + std::to_string(bits) + " (" +
                                      value_type_name(t) + ") does not fit in " + std::string(cpp_type_name<T>()));
    }
    if (is_signed_int(t)) {
      const int64_t v = signed_value(t, bits);
      if (std::in_range<T>(v)) return static_cast<T>(v);
      fail(ErrorCategory::FORMAT, std::string(what) + where + ": value " + std::to_string(v) + " (" +
                                      value_type_name(t) + ") does not fit in " + std::string(cpp_type_name<T>()));
    }
    fail(ErrorCategory::FORMAT, mismatch() + " (an integer type)");
  }
}

}  // namespace

std::string value_type_name(uint32_t type_id) {
  if (type_id < kValueTypeNames.size()) return std::string(kValueTypeNames[type_id]);
  return "type " + std::to_string(type_id);
}

uint32_t value_type_size(GgufValueType t) noexcept {
  switch (t) {
    case GgufValueType::UINT8:
    case GgufValueType::INT8:
    case GgufValueType::BOOL:
      return 1;
    case GgufValueType::UINT16:
    case GgufValueType::INT16:
      return 2;
    case GgufValueType::UINT32:
    case GgufValueType::INT32:
    case GgufValueType::FLOAT32:
      return 4;
    case GgufValueType::UINT64:
    case GgufValueType::INT64:
    case GgufValueType::FLOAT64:
      return 8;
    case GgufValueType::STRING:
    case GgufValueType::ARRAY:
      return 0;
  }
  return 0;
}

template <class T>
GgufValue GgufValue::scalar(T v) {
  GgufValue out;
  out.m_type = value_type_of<T>();
  std::memcpy(&out.m_bits, &v, sizeof(T));
  return out;
}

GgufValue GgufValue::string(std::string s) {
  GgufValue out;
  out.m_type = GgufValueType::STRING;
  out.m_string = std::move(s);
  return out;
}

template <class T>
GgufValue GgufValue::array(const std::vector<T>& values) {
  GgufValue out;
  out.m_type = GgufValueType::ARRAY;
  out.m_array_type = value_type_of<T>();
  out.m_array_count = values.size();
  out.m_array_bytes.resize(values.size() * sizeof(T));
  for (size_t i = 0; i < values.size(); ++i) {
    const T v = values[i];  // a copy, because std::vector<bool> has no addressable elements
    std::memcpy(out.m_array_bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  return out;
}

GgufValue GgufValue::string_array(std::vector<std::string> values) {
  GgufValue out;
  out.m_type = GgufValueType::ARRAY;
  out.m_array_type = GgufValueType::STRING;
  out.m_array_count = values.size();
  out.m_string_array = std::move(values);
  return out;
}

GgufValue GgufValue::raw_array(GgufValueType element_type, uint64_t count, std::vector<uint8_t> bytes) {
  const uint32_t size = value_type_size(element_type);
  if (size == 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "raw GGUF array: element type " + value_type_name(element_type) + " is not a fixed-size scalar type");
  const auto expected = checked_mul(count, size);
  if (!expected || *expected != bytes.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "raw GGUF array of " + std::to_string(count) + " " + value_type_name(element_type) + " elements: got " +
             std::to_string(bytes.size()) + " bytes, expected count * " + std::to_string(size));
  GgufValue out;
  out.m_type = GgufValueType::ARRAY;
  out.m_array_type = element_type;
  out.m_array_count = count;
  out.m_array_bytes = std::move(bytes);
  return out;
}

GgufValue GgufValue::raw_scalar(GgufValueType type, uint64_t bits) {
  const uint32_t size = value_type_size(type);
  if (size == 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "raw GGUF scalar: type " + value_type_name(type) + " is not a fixed-size scalar type");
  if (size < 8 && (bits >> (8 * size)) != 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "raw GGUF scalar: bits " + std::to_string(bits) + " do not fit in " + value_type_name(type));
  GgufValue out;
  out.m_type = type;
  out.m_bits = bits;
  return out;
}

uint64_t GgufValue::array_size() const noexcept { return is_array() ? m_array_count : 0; }

template <class T>
T GgufValue::as(std::string_view what) const {
  if (m_type == GgufValueType::STRING || m_type == GgufValueType::ARRAY) {
    std::string found = value_type_name(m_type);
    if (m_type == GgufValueType::ARRAY) found += " of " + value_type_name(m_array_type);
    fail(ErrorCategory::FORMAT,
         std::string(what) + ": has type " + found + ", expected a scalar " + std::string(cpp_type_name<T>()));
  }
  return convert_scalar<T>(m_type, m_bits, what, "");
}

const std::string& GgufValue::as_string(std::string_view what) const {
  if (m_type != GgufValueType::STRING) {
    std::string found = value_type_name(m_type);
    if (m_type == GgufValueType::ARRAY) found += " of " + value_type_name(m_array_type);
    fail(ErrorCategory::FORMAT, std::string(what) + ": has type " + found + ", expected STRING");
  }
  return m_string;
}

template <class T>
std::vector<T> GgufValue::array_as(std::string_view what) const {
  if (m_type != GgufValueType::ARRAY || m_array_type == GgufValueType::STRING) {
    std::string found = value_type_name(m_type);
    if (m_type == GgufValueType::ARRAY) found += " of " + value_type_name(m_array_type);
    fail(ErrorCategory::FORMAT,
         std::string(what) + ": has type " + found + ", expected an ARRAY of " + std::string(cpp_type_name<T>()));
  }
  const uint32_t size = value_type_size(m_array_type);
  std::vector<T> out;
  out.reserve(m_array_count);
  for (uint64_t i = 0; i < m_array_count; ++i) {
    uint64_t bits = 0;
    std::memcpy(&bits, m_array_bytes.data() + i * size, size);
    out.push_back(convert_scalar<T>(m_array_type, bits, what, ", element " + std::to_string(i)));
  }
  return out;
}

const std::vector<std::string>& GgufValue::as_string_array(std::string_view what) const {
  if (m_type != GgufValueType::ARRAY || m_array_type != GgufValueType::STRING) {
    std::string found = value_type_name(m_type);
    if (m_type == GgufValueType::ARRAY) found += " of " + value_type_name(m_array_type);
    fail(ErrorCategory::FORMAT, std::string(what) + ": has type " + found + ", expected an ARRAY of STRING");
  }
  return m_string_array;
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (m_type != other.m_type) return false;
  switch (m_type) {
    case GgufValueType::STRING:
      return m_string == other.m_string;
    case GgufValueType::ARRAY:
      return m_array_type == other.m_array_type && m_array_count == other.m_array_count &&
             m_array_bytes == other.m_array_bytes && m_string_array == other.m_string_array;
    default:
      return m_bits == other.m_bits;
  }
}

#define FERRY_GGUF_VALUE_INSTANTIATE(T)                          \
  template GgufValue GgufValue::scalar<T>(T);                    \
  template GgufValue GgufValue::array<T>(const std::vector<T>&); \
  template T GgufValue::as<T>(std::string_view) const;           \
  template std::vector<T> GgufValue::array_as<T>(std::string_view) const;

FERRY_GGUF_VALUE_INSTANTIATE(uint8_t)
FERRY_GGUF_VALUE_INSTANTIATE(int8_t)
FERRY_GGUF_VALUE_INSTANTIATE(uint16_t)
FERRY_GGUF_VALUE_INSTANTIATE(int16_t)
FERRY_GGUF_VALUE_INSTANTIATE(uint32_t)
FERRY_GGUF_VALUE_INSTANTIATE(int32_t)
FERRY_GGUF_VALUE_INSTANTIATE(uint64_t)
FERRY_GGUF_VALUE_INSTANTIATE(int64_t)
FERRY_GGUF_VALUE_INSTANTIATE(float)
FERRY_GGUF_VALUE_INSTANTIATE(double)
FERRY_GGUF_VALUE_INSTANTIATE(bool)

#undef FERRY_GGUF_VALUE_INSTANTIATE

}  // namespace ferry
