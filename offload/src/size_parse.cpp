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

// Significant digits beyond 10^20 cannot matter for a byte count and would overflow the exact arithmetic below.
constexpr u128 kMaxDigitsValue = u128{10000000000000000000ull} * 10;

constexpr const char* kTooLarge = "the size is too large (more than 2^64 bytes, 16 EiB)";

u128 pow10(int64_t n) {
  u128 p = 1;
  for (int64_t i = 0; i < n; ++i) p *= 10;
  return p;
}

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

  // The number as digits D and a decimal exponent E (value = D x 10^E): "7.5" is D = 75, E = -1; "1e30" is D = 1,
  // E = 30. Scientific notation is accepted so that "1e30" is refused as too large rather than as a bad character.
  size_t i = 0;
  u128 digits = 0;
  size_t n_digits = 0;
  int64_t exponent = 0;
  auto take_digits = [&](bool fraction) {
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (digits == 0 && s[i] == '0' && !fraction) {  // leading zeros carry nothing
        ++i;
        ++n_digits;
        continue;
      }
      ++n_digits;
      if (digits >= kMaxDigitsValue) {
        // Twenty significant digits are more than a byte count can use: further fraction digits are dropped, and
        // an integer part this long is over 2^64 bytes.
        if (!fraction) refuse(text, kTooLarge);
        ++i;
        continue;
      }
      digits = digits * 10 + static_cast<unsigned>(s[i] - '0');
      if (fraction) --exponent;
      ++i;
    }
  };
  take_digits(false);
  if (i < s.size() && s[i] == '.') {
    ++i;
    take_digits(true);
  }
  if (n_digits == 0) refuse(text, "it does not start with a number");
  if (i + 1 < s.size() && (s[i] == 'e' || s[i] == 'E') &&
      (std::isdigit(static_cast<unsigned char>(s[i + 1])) || s[i + 1] == '+' || s[i + 1] == '-')) {
    ++i;
    const bool negative = s[i] == '-';
    if (s[i] == '+' || s[i] == '-') ++i;
    int64_t e = 0;
    size_t e_digits = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (e < 100000) e = e * 10 + (s[i] - '0');
      ++e_digits;
      ++i;
    }
    if (e_digits == 0) refuse(text, "the exponent has no digits");
    exponent += negative ? -e : e;
  }

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

  // value = digits x 10^exponent x factor, exactly, rounded to the nearest byte (halves up).
  const u128 limit = u128{UINT64_MAX};
  u128 value = digits * unit->factor;  // digits < 10^20 and factor < 2^41: no overflow
  if (exponent > 0) {
    for (int64_t e = 0; e < exponent && value != 0; ++e) {
      value *= 10;
      if (value > limit) refuse(text, kTooLarge);
    }
  } else if (exponent < 0) {
    if (unit->factor == 1 && digits != 0 && (-exponent > 38 || digits % pow10(-exponent) != 0))
      refuse(text, "a byte count must be whole");
    // Divide by 10^-exponent with rounding; beyond 10^38 every representable value rounds to zero.
    value = -exponent > 38 ? 0 : (value * 2 + pow10(-exponent)) / (pow10(-exponent) * 2);
  }
  if (value > limit) refuse(text, kTooLarge);
  return static_cast<uint64_t>(value);
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
