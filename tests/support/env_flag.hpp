// Test switches read from the environment (set by CI and the project scripts, never needed to run a test by hand).
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::test {

// True when the variable is set to exactly "1".
inline bool env_flag(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

// FERRY_TEST_QUICK=1: the GPU tests shrink their largest shapes and longest loops (scripts/device-run.sh sets it for
// the compute-sanitizer runs, which slow kernels 10-100x). Every code path keeps at least one case; only sizes shrink.
inline bool quick_mode() {
  static const bool quick = env_flag("FERRY_TEST_QUICK");
  return quick;
}

// False under compute-sanitizer (FERRY_UNDER_SANITIZER=1, set by scripts/device-run.sh): the tool serializes kernels
// and slows them 10-100x, so checks of overlap and rates say nothing there; the checks of results still run.
inline bool timing_checks() {
  static const bool under_sanitizer = env_flag("FERRY_UNDER_SANITIZER");
  return !under_sanitizer;
}

// Sets an environment variable for a scope (a test case), restoring the caller's value, or its absence, on the way
// out, also when a check throws.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : m_name(name) {
    if (const char* v = std::getenv(name)) m_previous = v;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (m_previous)
      ::setenv(m_name.c_str(), m_previous->c_str(), 1);
    else
      ::unsetenv(m_name.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string m_name;
  std::optional<std::string> m_previous;
};

}  // namespace ferry::test
