// Byte sizes as users write them (`--vram 8GiB`, `7.5G`, `512MiB`), and back to text.
//
// Units (case-insensitive, optional spaces between number and unit):
//   B or none                 bytes (the number must then be whole)
//   KiB MiB GiB TiB           binary: 2^10, 2^20, 2^30, 2^40
//   K KB  M MB  G GB  T TB    decimal: 10^3, 10^6, 10^9, 10^12
// The bare letters are decimal, like their SI spellings, on purpose: where a reader might mean either, the decimal
// reading is the smaller number, so an ambiguous `--vram 8G` can only make ferry more careful, never overrun a card.
// The number is plain decimal with an optional fraction (`7.5`); fractional bytes round to the nearest byte.
// Anything else (signs, exponents, hex, empty, a missing number, an unknown unit, overflow) is refused with
// INVALID_ARGUMENT naming the text and the accepted forms.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry {

uint64_t parse_size(std::string_view text);
// A VRAM budget: parse_size, and zero is refused too.
uint64_t parse_budget(std::string_view text);
// "512 B", "1.50 KiB", "7.25 GiB": binary units, two decimals above bytes.
std::string format_size(uint64_t bytes);

}  // namespace ferry
