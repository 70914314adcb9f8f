// The --logits-out file read back by its documented layout (ferry/text/logits_file.hpp), independently of the writer.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <vector>

#include "support/text.hpp"

namespace ferry::test {

// The header (16 bytes: "FERRYLGT", uint32 version, uint32 n_vocab), then rows of int32 position, int32 token and
// n_vocab float32 logits to the end of the file; all little-endian, as this host is.
struct LogitsFile {
  uint32_t version = 0, n_vocab = 0;
  std::vector<int32_t> positions, tokens;
  std::vector<float> logits;  // rows * n_vocab
  size_t rows() const noexcept { return positions.size(); }
};

inline LogitsFile parse_logits_file(const std::filesystem::path& path) {
  const std::vector<std::byte> bytes = read_file_bytes(path);
  REQUIRE(bytes.size() >= 16);
  REQUIRE(std::memcmp(bytes.data(), "FERRYLGT", 8) == 0);
  LogitsFile f;
  std::memcpy(&f.version, bytes.data() + 8, 4);
  std::memcpy(&f.n_vocab, bytes.data() + 12, 4);
  REQUIRE(f.n_vocab > 0);
  const size_t row = 8 + 4 * static_cast<size_t>(f.n_vocab);
  REQUIRE((bytes.size() - 16) % row == 0);
  const size_t rows = (bytes.size() - 16) / row;
  f.positions.resize(rows);
  f.tokens.resize(rows);
  f.logits.resize(rows * f.n_vocab);
  for (size_t r = 0; r < rows; ++r) {
    const std::byte* p = bytes.data() + 16 + r * row;
    std::memcpy(&f.positions[r], p, 4);
    std::memcpy(&f.tokens[r], p + 4, 4);
    std::memcpy(f.logits.data() + r * f.n_vocab, p + 8, 4 * static_cast<size_t>(f.n_vocab));
  }
  return f;
}

}  // namespace ferry::test
