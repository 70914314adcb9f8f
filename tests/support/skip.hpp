// Test cases whose input is missing report "skipped" instead of passing without checking anything. A test case calls
// skip_test_case(why) and returns; test_main then exits with 77 (CTest: skipped) when every test case that ran was
// skipped and none failed. A test executable mixing such cases with others still passes or fails on the others, so a
// test that can be skipped lives in an executable of its own (see tests/CMakeLists.txt).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "env_flag.hpp"

namespace ferry::test {

// Marks the running test case as skipped and prints why (defined in test_main.cpp).
void skip_test_case(const std::string& why);

// True when `path` (a file of ../shared/data) exists. When it does not, the test case fails under
// FERRY_REQUIRE_SHARED_DATA=1 (set by scripts/test.sh and CI, which have ../shared: there a missing file is a broken
// checkout) and is skipped otherwise (a machine given only the repository).
inline bool require_shared_data(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(path, ec)) return true;
  if (env_flag("FERRY_REQUIRE_SHARED_DATA")) {
    FAIL_CHECK("FERRY_REQUIRE_SHARED_DATA=1 but the shared data file " << path.string() << " is missing");
    return false;
  }
  skip_test_case("the shared data file " + path.string() + " is absent (set FERRY_REQUIRE_SHARED_DATA=1 to fail)");
  return false;
}

}  // namespace ferry::test
