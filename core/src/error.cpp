#include "ferry/error.hpp"

#include <algorithm>

namespace ferry {

std::string_view category_name(ErrorCategory category) noexcept {
  switch (category) {
    case ErrorCategory::IO: return "I/O error";
    case ErrorCategory::FORMAT: return "format error";
    case ErrorCategory::INVALID_ARGUMENT: return "invalid argument";
    case ErrorCategory::UNSUPPORTED: return "unsupported";
    case ErrorCategory::NOT_FOUND: return "not found";
    case ErrorCategory::BUDGET: return "budget exceeded";
    case ErrorCategory::CUDA: return "CUDA error";
    case ErrorCategory::INTERNAL: return "internal error";
  }
  return "error";
}

std::string quote_name(std::string_view name) {
  std::string out = "'";
  const size_t shown = std::min(name.size(), kQuotedNameMax);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      constexpr char kHex[] = "0123456789abcdef";
      out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < name.size()) out += "...' (" + std::to_string(name.size()) + " bytes)";
  else out += "'";
  return out;
}

void fail(ErrorCategory category, const std::string& message) { throw Error(category, message); }

}  // namespace ferry
