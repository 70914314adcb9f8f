// GPT-2's printable form of a byte (the byte-level BPE alphabet), written independently of the tokenizer's own table,
// for tests that build byte-level vocabularies: printable bytes stand for themselves, the others map to U+0100 and up
// in byte order.
#pragma once

#include <string>

namespace ferry::test {

inline std::string byte_char(unsigned b) {
  auto printable = [](unsigned k) { return (k >= 33 && k <= 126) || (k >= 161 && k <= 172) || k >= 174; };
  unsigned cp = b;
  if (!printable(b)) {
    unsigned n = 0;
    for (unsigned k = 0; k < b; ++k) n += !printable(k);
    cp = 256 + n;
  }
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace ferry::test
