// The human-readable form of GGUF metadata values for `ferry info`: numbers in their shortest round-trip form,
// strings quoted and escaped, long strings and arrays summarised ("[STRING x 32000] "<unk>", "<s>", ... (31998 more)")
// so a tokenizer vocabulary does not flood the terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "ferry/gguf_value.hpp"

namespace ferry::cli {

struct TextLimits {
  size_t max_array_elements = 8;  // arrays longer than this show their first `shown_array_elements`
  size_t shown_array_elements = 5;
  size_t max_string_bytes = 96;  // longer strings are cut (on a UTF-8 boundary) and their length is given
};

// "\"text\"" with \n, \t, \", \\ and other control bytes escaped; cut to limits.max_string_bytes.
std::string quote_string(std::string_view s, const TextLimits& limits = {});
// A scalar or array as one line (arrays start with "[TYPE x N]").
std::string value_to_text(const GgufValue& value, const TextLimits& limits = {});
// The type column: "UINT32", "STRING", "ARRAY".
std::string value_type_text(const GgufValue& value);

// Joins strings, literals and views into one string. Used instead of chains that start with `"literal" +
// std::to_string(...)`, which GCC 12 mis-diagnoses with -Wrestrict (GCC bug 105329).
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

// Sizes for people: "512 B", "1.50 KiB", "3.82 GiB".
std::string human_bytes(uint64_t n);

}  // namespace ferry::cli
