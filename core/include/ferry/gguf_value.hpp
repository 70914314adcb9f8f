// A GGUF metadata value: one scalar of any of the 13 value types, or an array of scalars or strings. The exact type
// is kept so a file read and written back is identical byte for byte.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ferry {

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// "UINT32", "STRING", ...; "type 77" for ids outside the enum.
std::string value_type_name(uint32_t type_id);
inline std::string value_type_name(GgufValueType t) { return value_type_name(static_cast<uint32_t>(t)); }
// Bytes of one element of a fixed-size value type; 0 for STRING and ARRAY.
uint32_t value_type_size(GgufValueType t) noexcept;

class GgufValue {
 public:
  GgufValue() = default;  // UINT8 zero; only for containers

  // Scalars: the C++ type picks the GGUF type (bool -> BOOL, float -> FLOAT32, double -> FLOAT64, ...).
  template <class T>
  static GgufValue scalar(T v);
  static GgufValue string(std::string s);
  // Arrays of fixed-size scalars; the element type is given explicitly so an empty array keeps it.
  template <class T>
  static GgufValue array(const std::vector<T>& values);
  static GgufValue string_array(std::vector<std::string> values);
  // An array from raw little-endian element bytes (used by the reader); bytes.size() == count * value_type_size(t).
  static GgufValue raw_array(GgufValueType element_type, uint64_t count, std::vector<uint8_t> bytes);
  // A fixed-size scalar from its little-endian bits (used by the reader; a BOOL byte other than 0/1 is kept as is).
  static GgufValue raw_scalar(GgufValueType type, uint64_t bits);

  GgufValueType type() const noexcept { return m_type; }
  GgufValueType array_type() const noexcept { return m_array_type; }  // meaningful when type() == ARRAY
  uint64_t array_size() const noexcept;
  bool is_array() const noexcept { return m_type == GgufValueType::ARRAY; }

  // Typed access. Integers convert between widths and signedness only when the value fits (a u32 key read as
  // int64 works; -1 read as uint32 throws); FLOAT32 and FLOAT64 read as float or double. Anything else throws
  // FORMAT with `what` (usually "key 'llama.block_count' in FILE") and the expected and found types.
  template <class T>
  T as(std::string_view what) const;
  const std::string& as_string(std::string_view what) const;
  // Array access with the same conversion rules per element.
  template <class T>
  std::vector<T> array_as(std::string_view what) const;
  const std::vector<std::string>& as_string_array(std::string_view what) const;

  // Raw storage, for the writer and for printing.
  uint64_t scalar_bits() const noexcept { return m_bits; }  // fixed-size scalar, little-endian bits
  const std::vector<uint8_t>& array_bytes() const noexcept { return m_array_bytes; }

  // Equality of type and content (bitwise for floats, so NaN payloads round trip).
  bool operator==(const GgufValue& other) const;

 private:
  GgufValueType m_type = GgufValueType::UINT8;
  GgufValueType m_array_type = GgufValueType::UINT8;
  uint64_t m_bits = 0;                      // fixed-size scalars
  std::string m_string;                     // STRING
  std::vector<uint8_t> m_array_bytes;       // ARRAY of fixed-size elements
  std::vector<std::string> m_string_array;  // ARRAY of STRING
  uint64_t m_array_count = 0;
};

}  // namespace ferry
