// The doctest main shared by every test executable. GPU test executables (FERRY_GPU_TEST) exit with 77 when no GPU is
// present, which CTest reports as "skipped", and say so on stdout.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#ifdef FERRY_GPU_TEST
#include <cuda_runtime.h>
#endif

int main(int argc, char** argv) {
#ifdef FERRY_GPU_TEST
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("skipped: no GPU\n");
    return 77;
  }
#endif
  doctest::Context context(argc, argv);
  return context.run();
}
