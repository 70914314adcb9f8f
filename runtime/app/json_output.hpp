// The JSON form of `ferry info`: {"version", "alignment", "metadata": {key: value}, "tensors": [{"name", "type", "ne",
// "file_offset", "n_bytes"}]}. Metadata keeps file order. Integers whose magnitude exceeds 2^53 (where a double, and
// so most JSON readers, would round) are written as decimal strings; non-finite floats as the strings "nan", "inf",
// "-inf" (JSON has no literal for them); arrays are written in full.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "ferry/gguf.hpp"

namespace ferry::cli {

using Json = nlohmann::ordered_json;

Json integer_to_json(uint64_t v);
Json integer_to_json(int64_t v);
Json value_to_json(const GgufValue& value);
Json file_to_json(const GgufFile& file);

// Serialises for output: two-space indent; invalid UTF-8 in strings is replaced by U+FFFD rather than aborting.
std::string dump_json(const Json& json);

}  // namespace ferry::cli
