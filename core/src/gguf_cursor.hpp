// ByteCursor: bounds-checked little-endian reads from an untrusted buffer, for the GGUF reader. Every read first checks
// that the bytes exist, and every length is compared with what is left before anything is allocated, so a corrupt
// length can neither read past the end nor make the reader reserve more memory than the file holds. Errors are
// FORMAT and name the file, what was being read and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/error.hpp"

namespace ferry::detail {

class ByteCursor {
 public:
  ByteCursor(std::span<const std::byte> bytes, const std::string& file_name) : m_bytes(bytes), m_name(file_name) {}

  uint64_t pos() const noexcept { return m_pos; }
  uint64_t size() const noexcept { return m_bytes.size(); }
  uint64_t remaining() const noexcept { return m_bytes.size() - m_pos; }

  // Throws FORMAT ("truncated") unless n more bytes exist.
  void need(uint64_t n, std::string_view what) const {
    if (n > remaining())
      fail(ErrorCategory::FORMAT, m_name + ": truncated at byte " + std::to_string(m_pos) + ": " + std::string(what) +
                                      " needs " + std::to_string(n) + " bytes but only " + std::to_string(remaining()) +
                                      " remain (file size " + std::to_string(size()) + ")");
  }

  uint32_t u32(std::string_view what) { return static_cast<uint32_t>(scalar(4, what)); }
  uint64_t u64(std::string_view what) { return scalar(8, what); }

  // A little-endian scalar of 1, 2, 4 or 8 bytes, zero-extended.
  uint64_t scalar(uint32_t n_bytes, std::string_view what) {
    need(n_bytes, what);
    uint64_t v = 0;
    std::memcpy(&v, m_bytes.data() + m_pos, n_bytes);  // the host is little-endian (checked in gguf_value.cpp)
    m_pos += n_bytes;
    return v;
  }

  // A GGUF string: u64 length, then that many bytes (no terminator).
  std::string string(std::string_view what) {
    const uint64_t length_pos = m_pos;
    const uint64_t length = u64(what);
    check_length(length, length_pos, what);
    std::string s(reinterpret_cast<const char*>(m_bytes.data() + m_pos), static_cast<size_t>(length));
    m_pos += length;
    return s;
  }

  // n raw bytes; n has already been computed with overflow checks by the caller.
  std::vector<uint8_t> raw(uint64_t n, std::string_view what) {
    need(n, what);
    const auto* p = reinterpret_cast<const uint8_t*>(m_bytes.data() + m_pos);
    std::vector<uint8_t> out(p, p + n);
    m_pos += n;
    return out;
  }

  // Throws FORMAT when a length read at `length_pos` is larger than what follows the current position.
  void check_length(uint64_t length, uint64_t length_pos, std::string_view what) const {
    if (length > remaining())
      fail(ErrorCategory::FORMAT, m_name + ": truncated or corrupt: " + std::string(what) + " has length " +
                                      std::to_string(length) + " (at byte " + std::to_string(length_pos) +
                                      ") but only " + std::to_string(remaining()) + " bytes follow (file size " +
                                      std::to_string(size()) + ")");
  }

 private:
  std::span<const std::byte> m_bytes;
  const std::string& m_name;
  uint64_t m_pos = 0;
};

}  // namespace ferry::detail
