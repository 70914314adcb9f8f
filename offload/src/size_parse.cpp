#include "ferry/offload/size_parse.hpp"

#include <array>
#include <cctype>
#include <cstdio>

#include "ferry/error.hpp"

namespace ferry {
namespace {

__extension__ typedef unsigned __int128 u128;  // exact arithmetic: digits x unit never overflow it

struct Unit {
  std::string_view name;  // lower case
  uint64_t factor;
};

constexpr std::array kUnits = {
    Unit{"", 1},
    Unit{"b", 1},
    Unit{"kib", uint64_t{1} << 10},
    Unit{"mib", uint64_t{1} << 20},
    Unit{"gib", uint64_t{1} << 30},
    Unit{"tib", uint64_t{1} << 40},
    Unit{"k", 1000ull},
    Unit{"kb", 1000ull},
    Unit{"m", 1000ull * 1000},
    Unit{"mb", 1000ull * 1000},
    Unit{"g", 1000ull * 1000 * 1000},
    Unit{"gb", 1000ull * 1000 * 1000},
    Unit{"t", 1000ull * 1000 * 1000 * 1000},
    Unit{"tb", 1000ull * 1000 * 1000 * 1000},
};

// More digits than this cannot matter for a byte count and would overflow the exact arithmetic below.
constexpr size_t kMaxIntegerDigits = 20;
constexpr size_t kMaxFractionDigits = 18;

[[noreturn]] void refuse(std::string_view text, std::string_view why) {
  fail(ErrorCategory::INVALID_ARGUMENT,
       "invalid size '" + std::string(text) + "': " + std::string(why) +
           "; expected a number with an optional unit: B, KiB, MiB, GiB, TiB (binary) or K/KB, M/MB, G/GB, T/TB "
           "(decimal), e.g. 8GiB, 7.5G, 512MiB");
}

bool is_space(char c) { return c == ' ' || c == '\t'; }

}  // namespace

uint64_t parse_size(std::string_view text) {
  size_t begin = 0, end = text.size();
  while (begin < end && is_space(text[begin])) ++begin;
  while (end > begin && is_space(text[end - 1])) --end;
  const std::string_view s = text.substr(begin, end - begin);
  if (s.empty()) refuse(text, "it is empty");

  size_t i = 0;
  u128 integer = 0;
  size_t integer_digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (++integer_digits > kMaxIntegerDigits) refuse(text, "the number is too large");
    integer = integer * 10 + static_cast<unsigned>(s[i] - '0');
    ++i;
  }
  u128 fraction = 0, fraction_scale = 1;
  size_t fraction_digits = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (++fraction_digits > kMaxFractionDigits) refuse(text, "too many digits after the decimal point");
      fraction = fraction * 10 + static_cast<unsigned>(s[i] - '0');
      fraction_scale *= 10;
      ++i;
    }
  }
  if (integer_digits == 0 && fraction_digits == 0) refuse(text, "it does not start with a number");

  while (i < s.size() && is_space(s[i])) ++i;
  std::string unit_text;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (!std::isalpha(static_cast<unsigned char>(c))) refuse(text, "unexpected character '" + std::string(1, c) + "'");
    unit_text.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  const Unit* unit = nullptr;
  for (const Unit& u : kUnits)
    if (u.name == unit_text) unit = &u;
  if (unit == nullptr) refuse(text, "unknown unit '" + unit_text + "'");

  // value = (integer + fraction / scale) * factor, exactly, rounded to the nearest byte (halves up).
  const u128 limit = u128{UINT64_MAX};
  const u128 whole = integer * unit->factor;
  if (integer > limit || whole > limit) refuse(text, "the size does not fit in 64 bits");
  if (fraction_digits > 0 && unit->factor == 1 && fraction != 0) refuse(text, "a byte count must be whole");
  const u128 part = (fraction * unit->factor * 2 + fraction_scale) / (fraction_scale * 2);
  const u128 total = whole + part;
  if (total > limit) refuse(text, "the size does not fit in 64 bits");
  return static_cast<uint64_t>(total);
}

uint64_t parse_budget(std::string_view text) {
  const uint64_t bytes = parse_size(text);
  if (bytes == 0) refuse(text, "a budget of zero bytes leaves nothing to run with");
  return bytes;
}

std::string format_size(uint64_t bytes) {
  static constexpr std::array<std::string_view, 5> kNames = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < kNames.size()) {
    value /= 1024.0;
    ++unit;
  }
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f %s", value, std::string(kNames[unit]).c_str());
  return buffer;
}

}  // namespace ferry
