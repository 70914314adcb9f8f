// Test switches read from the environment (set by CI and the project scripts, never needed to run a test by hand).
#pragma once

#include <cstdlib>
#include <string_view>

namespace ferry::test {

// True when the variable is set to exactly "1".
inline bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

}  // namespace ferry::test
