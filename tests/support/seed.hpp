// Seeds of the tests' random data. Every seed is test_seed(salt) = base + salt: the salt is fixed in the test (so each
// test case draws its own data, independent of which other cases ran), the base is 0 unless FERRY_TEST_SEED sets it.
// test_main prints the base at the start of every test executable, so a failure logged by CTest can be replayed
// (FERRY_TEST_SEED=N) and the suite can be run on other data (FERRY_TEST_SEED=1, 2, ...).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ferry::test {

// The base from FERRY_TEST_SEED: a decimal unsigned 64-bit number, nothing else. A malformed value throws rather than
// reading as 0, which would silently rerun the default data while the log claims another seed.
inline uint64_t parse_test_seed(std::string_view text) {
  const auto fail = [&](const char* why) {
    throw std::invalid_argument("FERRY_TEST_SEED='" + std::string(text) + "' " + why +
                                "; expected a decimal number from 0 to 18446744073709551615");
  };
  if (text.empty()) fail("is empty");
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') fail("is not a decimal number");
    const auto digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) fail("is too large");
    value = value * 10 + digit;
  }
  return value;
}

inline uint64_t test_seed_base() {
  static const uint64_t base = [] {
    const char* env = std::getenv("FERRY_TEST_SEED");
    return env == nullptr ? uint64_t{0} : parse_test_seed(env);
  }();
  return base;
}

// The seed for the data identified by `salt` (wraps around modulo 2^64, like any seed arithmetic).
inline uint64_t test_seed(uint64_t salt) { return test_seed_base() + salt; }

}  // namespace ferry::test
