#include "json_output.hpp"

#include <cmath>
#include <string>

#include "value_decode.hpp"

namespace ferry::cli {
namespace {

constexpr uint64_t kMaxExactInteger = uint64_t{1} << 53;  // every integer up to 2^53 is exact in a double

Json float_to_json(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}

Json scalar_to_json(const Scalar& s) {
  return std::visit(
      [](auto v) -> Json {
        using T = decltype(v);
        if constexpr (std::is_same_v<T, Float32>)
          return float_to_json(static_cast<double>(v.value));
        else if constexpr (std::is_same_v<T, double>)
          return float_to_json(v);
        else if constexpr (std::is_same_v<T, bool>)
          return v;
        else
          return integer_to_json(v);
      },
      s);
}

}  // namespace

Json integer_to_json(uint64_t v) {
  if (v > kMaxExactInteger) return std::to_string(v);
  return v;
}

Json integer_to_json(int64_t v) {
  // The magnitude as unsigned so INT64_MIN does not overflow on negation.
  const uint64_t magnitude = v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (magnitude > kMaxExactInteger) return std::to_string(v);
  return v;
}

Json value_to_json(const GgufValue& value) {
  switch (value.type()) {
    case GgufValueType::STRING:
      return value.as_string("metadata value");
    case GgufValueType::ARRAY: {
      Json out = Json::array();
      if (value.array_type() == GgufValueType::STRING) {
        for (const std::string& s : value.as_string_array("metadata array")) out.push_back(s);
        return out;
      }
      const uint64_t n = value.array_size();
      for (uint64_t i = 0; i < n; ++i)
        out.push_back(scalar_to_json(decode_scalar(value.array_type(), array_element_bits(value, i))));
      return out;
    }
    default:
      return scalar_to_json(decode_scalar(value.type(), value.scalar_bits()));
  }
}

Json file_to_json(const GgufFile& file) {
  Json out = Json::object();
  out["version"] = file.version();
  out["alignment"] = integer_to_json(file.alignment());
  Json metadata = Json::object();
  for (const GgufKeyValue& kv : file.metadata()) metadata[kv.key] = value_to_json(kv.value);
  out["metadata"] = std::move(metadata);
  Json tensors = Json::array();
  for (const GgufTensorInfo& t : file.tensors()) {
    Json ne = Json::array();
    for (int64_t d : t.ne) ne.push_back(integer_to_json(d));
    tensors.push_back(Json{{"name", t.name},
                           {"type", std::string(type_name(t.type))},
                           {"ne", std::move(ne)},
                           {"file_offset", integer_to_json(t.file_offset)},
                           {"n_bytes", integer_to_json(t.n_bytes)}});
  }
  out["tensors"] = std::move(tensors);
  return out;
}

std::string dump_json(const Json& json) { return json.dump(2, ' ', false, Json::error_handler_t::replace); }

}  // namespace ferry::cli
