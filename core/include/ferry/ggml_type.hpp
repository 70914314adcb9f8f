// The GGML tensor type table: ids as stored in GGUF files, block geometry, names, and what ferry can do with each.
// Known-but-unsupported types (IQ2_XXS, ...) still have sizes here so a file holding them can be listed and its
// offsets validated; dequantizing them is refused by name.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ferry {

enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct TypeTraits {
  GgmlType type;
  std::string_view name;  // upper case, as ggml names it: "Q4_K"
  uint32_t block_size;    // elements per block
  uint32_t type_size;     // bytes per block
  bool dequantizable;     // ferry has a scalar reference that turns it into floats
  bool quantizable;       // ferry can produce it from floats
};

// nullptr for an id that is not in the table (removed ids 4 and 5, or anything newer than ferry).
const TypeTraits* find_type_traits(uint32_t type_id) noexcept;
// Throws UNSUPPORTED for an unknown type.
const TypeTraits& type_traits(GgmlType type);
std::string_view type_name(GgmlType type);
// Case-insensitive: "q4_k" and "Q4_K" both parse.
std::optional<GgmlType> parse_type_name(std::string_view name) noexcept;
// Every type in the table, in id order.
std::span<const TypeTraits> all_type_traits() noexcept;

// Bytes of one row of ne0 elements; throws INVALID_ARGUMENT if ne0 is not a multiple of the block size.
uint64_t row_bytes(GgmlType type, int64_t ne0);

}  // namespace ferry
