#include "ferry/error.hpp"

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

void fail(ErrorCategory category, const std::string& message) { throw Error(category, message); }

}  // namespace ferry
