// Catching the ferry::Error a call throws, for tests of error paths.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "ferry/error.hpp"

namespace ferry::test {

// The message of the ferry::Error `f` throws, after checking its category; fails the test case when `f` throws
// nothing.
template <class F>
std::string error_of(F&& f, ErrorCategory expected) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.category() == expected);
    return e.what();
  }
  FAIL("no ferry::Error was thrown");
  return {};
}

// The category of the ferry::Error `f` throws; INTERNAL when it throws nothing (no call under test throws INTERNAL,
// so a CHECK against the expected category fails either way).
template <class F>
ErrorCategory category_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.category();
  }
  return ErrorCategory::INTERNAL;
}

}  // namespace ferry::test
