#include "ferry/ggml_type.hpp"

#include <array>
#include <cctype>
#include <string>

#include "ferry/error.hpp"

namespace ferry {
namespace {

using T = GgmlType;
// Sizes from the public format description (gguf.md); dequantizable/quantizable say what ferry implements.
constexpr std::array kTypes = {
    TypeTraits{T::F32, "F32", 1, 4, true, true},
    TypeTraits{T::F16, "F16", 1, 2, true, true},
    TypeTraits{T::Q4_0, "Q4_0", 32, 18, true, true},
    TypeTraits{T::Q4_1, "Q4_1", 32, 20, true, true},
    TypeTraits{T::Q5_0, "Q5_0", 32, 22, true, true},
    TypeTraits{T::Q5_1, "Q5_1", 32, 24, true, true},
    TypeTraits{T::Q8_0, "Q8_0", 32, 34, true, true},
    TypeTraits{T::Q8_1, "Q8_1", 32, 36, false, false},
    TypeTraits{T::Q2_K, "Q2_K", 256, 84, true, true},
    TypeTraits{T::Q3_K, "Q3_K", 256, 110, true, true},
    TypeTraits{T::Q4_K, "Q4_K", 256, 144, true, true},
    TypeTraits{T::Q5_K, "Q5_K", 256, 176, true, true},
    TypeTraits{T::Q6_K, "Q6_K", 256, 210, true, true},
    TypeTraits{T::Q8_K, "Q8_K", 256, 292, false, false},
    TypeTraits{T::IQ2_XXS, "IQ2_XXS", 256, 66, false, false},
    TypeTraits{T::IQ2_XS, "IQ2_XS", 256, 74, false, false},
    TypeTraits{T::IQ3_XXS, "IQ3_XXS", 256, 98, false, false},
    TypeTraits{T::IQ1_S, "IQ1_S", 256, 50, false, false},
    TypeTraits{T::IQ4_NL, "IQ4_NL", 32, 18, true, true},
    TypeTraits{T::IQ3_S, "IQ3_S", 256, 110, false, false},
    TypeTraits{T::IQ2_S, "IQ2_S", 256, 82, false, false},
    TypeTraits{T::IQ4_XS, "IQ4_XS", 256, 136, true, true},
    TypeTraits{T::I8, "I8", 1, 1, false, false},
    TypeTraits{T::I16, "I16", 1, 2, false, false},
    TypeTraits{T::I32, "I32", 1, 4, false, false},
    TypeTraits{T::I64, "I64", 1, 8, false, false},
    TypeTraits{T::F64, "F64", 1, 8, false, false},
    TypeTraits{T::IQ1_M, "IQ1_M", 256, 56, false, false},
    TypeTraits{T::BF16, "BF16", 1, 2, true, true},
    TypeTraits{T::TQ1_0, "TQ1_0", 256, 54, false, false},
    TypeTraits{T::TQ2_0, "TQ2_0", 256, 66, false, false},
    TypeTraits{T::MXFP4, "MXFP4", 32, 17, false, false},
};

}  // namespace

const TypeTraits* find_type_traits(uint32_t type_id) noexcept {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == type_id) return &t;
  return nullptr;
}

const TypeTraits& type_traits(GgmlType type) {
  const TypeTraits* t = find_type_traits(static_cast<uint32_t>(type));
  if (!t) fail(ErrorCategory::UNSUPPORTED, "unknown GGML type id " + std::to_string(static_cast<uint32_t>(type)));
  return *t;
}

std::string_view type_name(GgmlType type) { return type_traits(type).name; }

std::optional<GgmlType> parse_type_name(std::string_view name) noexcept {
  for (const auto& t : kTypes) {
    if (t.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::toupper(static_cast<unsigned char>(name[i])) == t.name[i];
    if (same) return t.type;
  }
  return std::nullopt;
}

std::span<const TypeTraits> all_type_traits() noexcept { return kTypes; }

uint64_t row_bytes(GgmlType type, int64_t ne0) {
  const TypeTraits& t = type_traits(type);
  if (ne0 < 0 || ne0 % t.block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "row of " + std::to_string(ne0) + " elements is not a multiple of " +
                                              std::string(t.name) + "'s block of " + std::to_string(t.block_size));
  return static_cast<uint64_t>(ne0 / t.block_size) * t.type_size;
}

}  // namespace ferry
