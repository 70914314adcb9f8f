// ferry::Error: the one exception type library code throws. It carries a category so callers (the CLI, tests) can
// tell bad input from an unsupported feature or an exhausted budget, and a message that says what failed and where
// (file, tensor, key, offset; expected vs found).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry {

enum class ErrorCategory {
  IO,                // the operating system refused: open, mmap, read, write, rename
  FORMAT,            // a file is malformed: truncated, inconsistent, out of range
  INVALID_ARGUMENT,  // a caller or user gave a bad value (flag, size, name)
  UNSUPPORTED,       // well-formed but not handled: a type id, an architecture
  NOT_FOUND,         // a key, tensor or file that was asked for is absent
  BUDGET,            // a plan or allocation does not fit the VRAM budget
  CUDA,              // the CUDA runtime or cuBLAS reported an error
  INTERNAL,          // a broken invariant inside ferry
};

std::string_view category_name(ErrorCategory category) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCategory category, const std::string& message)
      : std::runtime_error(message), m_category(category) {}
  ErrorCategory category() const noexcept { return m_category; }

 private:
  ErrorCategory m_category;
};

// A name from a file or a user (tensor, key, flag value) ready to put in a message: in single quotes, control bytes
// escaped, and cut to its first kQuotedNameMax bytes with the full length stated, so a hostile 100 KB name cannot
// flood a terminal or a log.
inline constexpr size_t kQuotedNameMax = 120;
std::string quote_name(std::string_view name);

// Throws an Error; marked noreturn so callers can use it in expressions that must yield a value.
[[noreturn]] void fail(ErrorCategory category, const std::string& message);

}  // namespace ferry
