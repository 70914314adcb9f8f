// The doctest main shared by every test executable. GPU test executables (FERRY_GPU_TEST) exit with 77 when no GPU is
// present, which CTest reports as "skipped", and say so on stdout.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "env_flag.hpp"

#ifdef FERRY_GPU_TEST
#include <cuda_runtime.h>
#endif

int main(int argc, char** argv) {
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
  return context.run();
}
