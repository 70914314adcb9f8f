#include "value_text.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "value_decode.hpp"

namespace ferry::cli {
namespace {

// std::to_chars without a precision gives the shortest text that parses back to the same value.
template <class F>
std::string shortest_float(F v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::array<char, 64> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  if (ec != std::errc{}) return "?";
  return std::string(buf.data(), end);
}

std::string scalar_to_text(const Scalar& s) {
  return std::visit(
      [](auto v) -> std::string {
        using T = decltype(v);
        if constexpr (std::is_same_v<T, Float32>)
          return shortest_float(v.value);
        else if constexpr (std::is_same_v<T, double>)
          return shortest_float(v);
        else if constexpr (std::is_same_v<T, bool>)
          return v ? "true" : "false";
        else
          return std::to_string(v);
      },
      s);
}

// Cutting inside a multi-byte UTF-8 sequence would print a broken character: back off to a lead byte.
size_t utf8_cut(std::string_view s, size_t limit) {
  if (s.size() <= limit) return s.size();
  size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

}  // namespace

std::string quote_string(std::string_view s, const TextLimits& limits) {
  const size_t cut = utf8_cut(s, limits.max_string_bytes);
  std::string out = "\"";
  for (size_t i = 0; i < cut; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  if (cut < s.size()) out += concat("... (", std::to_string(s.size()), " bytes)");
  return out;
}

std::string value_to_text(const GgufValue& value, const TextLimits& limits) {
  if (value.type() == GgufValueType::STRING) return quote_string(value.as_string("metadata value"), limits);
  if (value.type() != GgufValueType::ARRAY) return scalar_to_text(decode_scalar(value.type(), value.scalar_bits()));

  const uint64_t n = value.array_size();
  std::string out = concat("[", value_type_name(value.array_type()), " x ", std::to_string(n), "]");
  const uint64_t shown = n > limits.max_array_elements ? limits.shown_array_elements : n;
  // Elements of a summarised string array are cut shorter: the line is an overview, not the data.
  TextLimits element_limits = limits;
  if (shown < n) element_limits.max_string_bytes = 32;
  for (uint64_t i = 0; i < shown; ++i) {
    out += i == 0 ? " " : ", ";
    if (value.array_type() == GgufValueType::STRING)
      out += quote_string(value.as_string_array("metadata array")[i], element_limits);
    else
      out += scalar_to_text(decode_scalar(value.array_type(), array_element_bits(value, i)));
  }
  if (shown < n) out += concat(", ... (", std::to_string(n - shown), " more)");
  return out;
}

std::string value_type_text(const GgufValue& value) { return value_type_name(value.type()); }

std::string human_bytes(uint64_t n) {
  static constexpr std::array<const char*, 6> kUnits = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < kUnits.size()) {
    v /= 1024.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  return buf;
}

}  // namespace ferry::cli
