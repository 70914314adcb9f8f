// UTF-8 well-formedness (RFC 3629): what text ferry accepts from a user before it reaches a tokenizer.
#pragma once

#include <cstddef>
#include <string_view>

namespace ferry {

inline constexpr size_t kValidUtf8 = static_cast<size_t>(-1);

// The byte offset of the first ill-formed sequence (a stray continuation byte, a truncated sequence, an overlong
// encoding, a surrogate, a code point above U+10FFFF), or kValidUtf8 when the whole text is well formed.
size_t first_invalid_utf8(std::string_view text) noexcept;

}  // namespace ferry
