// The doctest main shared by every test executable. It prints the seed base of the tests' random data first (CTest's
// --output-on-failure shows it with every failure; support/seed.hpp). GPU test executables (FERRY_GPU_TEST) exit with
// 77 when no GPU is present, which CTest reports as "skipped", and say so on stdout; so does an executable whose every
// test case that ran was skipped for a missing input (support/skip.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <set>
#include <string>

#include "env_flag.hpp"
#include "seed.hpp"
#include "skip.hpp"

#ifdef FERRY_GPU_TEST
#include <cuda_runtime.h>
#endif

namespace {

// Which test cases started and which of them called skip_test_case. Test cases are counted once (a case re-entered
// for its subcases starts once).
struct SkipLedger {
  int started = 0;
  const doctest::TestCaseData* current = nullptr;
  std::set<const doctest::TestCaseData*> skipped;
};
SkipLedger g_skips;

class SkipListener : public doctest::IReporter {
 public:
  explicit SkipListener(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData& tc) override {
    ++g_skips.started;
    g_skips.current = &tc;
  }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("ferry_skip_ledger", 1, SkipListener);

}  // namespace

namespace ferry::test {

void skip_test_case(const std::string& why) {
  if (g_skips.current != nullptr) g_skips.skipped.insert(g_skips.current);
  MESSAGE("skipped: " << why);
}

}  // namespace ferry::test

int main(int argc, char** argv) {
  try {
    const uint64_t base = ferry::test::test_seed_base();
    const auto n = static_cast<unsigned long long>(base);
    std::printf("test seed base: %llu (replay or vary with FERRY_TEST_SEED=%llu)\n", n, n);
  } catch (const std::exception& e) {
    std::printf("FAILED: %s\n", e.what());
    return 1;
  }
  std::fflush(stdout);
#ifdef FERRY_GPU_TEST
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    // On a GPU machine a skip would hide a broken driver or toolkit: FERRY_REQUIRE_GPU=1 (scripts/device-run.sh sets
    // it) turns it into a failure.
    if (ferry::test::env_flag("FERRY_REQUIRE_GPU")) {
      std::printf("FAILED: FERRY_REQUIRE_GPU=1 but no usable GPU (%s)\n",
                  status != cudaSuccess ? cudaGetErrorString(status) : "no device");
      return 1;
    }
    std::printf("skipped: no GPU (%s)\n", status != cudaSuccess ? cudaGetErrorName(status) : "no device");
    return 77;
  }
#endif
  doctest::Context context(argc, argv);
  const int result = context.run();
  if (context.shouldExit()) return result;  // --help, --list-test-cases and the like
  if (result == 0 && g_skips.started > 0 && static_cast<int>(g_skips.skipped.size()) == g_skips.started) {
    std::printf("skipped: every test case that ran lacked its input\n");
    return 77;
  }
  return result;
}
