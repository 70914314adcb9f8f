// `ferry serve`'s refusals before it listens (the HTTP side is tests/serve/check_serve.py's): flags out of range
// (exit 2, before the model is loaded), and a --parallel whose KV caches do not fit, refused with the largest that
// does (exit 1).
#include <doctest/doctest.h>

#include <cstdint>
#include <regex>
#include <string>

#include "support/asan.hpp"
#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

using namespace ferry::test;

#if !FERRY_TEST_HAVE_HTTP
// A build without cpp-httplib (an optional dependency) has no HTTP server: `ferry serve` must say so and what to
// install, instead of the refusals below, which need the server's flags.
TEST_CASE("ferry serve in a build without an HTTP library says so and names the package") {
  TempDir dir;
  const Result r = run_ferry({"serve", "missing.gguf", "--port", "8080"}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "libcpp-httplib-dev"), r.err);
}
#else
TEST_CASE("ferry serve: flags out of range are refused before the model is loaded") {
  TempDir dir;
  const Result port = run_ferry({"serve", "missing.gguf", "--port", "70000"}, dir.path());
  CHECK(port.status == 2);
  CHECK_MESSAGE(contains(port.err, "--port"), port.err);
  const Result parallel = run_ferry({"serve", "missing.gguf", "--parallel", "0"}, dir.path());
  CHECK(parallel.status == 2);
  CHECK_MESSAGE(contains(parallel.err, "--parallel"), parallel.err);
}

TEST_CASE("ferry serve: a --parallel whose KV caches do not fit is refused naming the largest that does") {
  if (kAddressSanitizer) {
    MESSAGE("AddressSanitizer build: address-space limits do not apply (its shadow memory needs terabytes)");
    return;
  }
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  // The tiny model's KV cache is 1 KiB per position: 64 sequences of 65536 positions are 4 GiB, more than a 3 GiB
  // address space holds; a few of them fit.
  RunSpec spec;
  spec.address_space_limit = uint64_t{3} << 30;
  const Result r = run_ferry(
      {"serve", model, "--ctx", "65536", "--force-ctx", "--parallel", "64", "--policy", "cpu-all", "--port", "0"},
      dir.path(), spec);
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "host memory"), r.err);
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(r.err, m, std::regex(R"(the largest --parallel that fits is (\d+))")), r.err);
  const int largest = std::stoi(m[1]);
  // Each sequence's cache is 64 MiB: at most 3 GiB / 64 MiB = 48 fit, and the process's own mappings (libraries,
  // the model, allocator reservations) take far less than a third of the space.
  CHECK(largest >= 32);
  CHECK(largest <= 48);
}
#endif
