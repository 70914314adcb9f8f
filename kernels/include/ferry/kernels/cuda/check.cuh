// FERRY_CUDA_CHECK / FERRY_CUBLAS_CHECK: every CUDA runtime and cuBLAS call, and every kernel launch
// (FERRY_CUDA_CHECK_LAUNCH after the <<<>>>), goes through these. A failure throws ferry::Error(CUDA) naming the call,
// the file and the line, so no error is silently dropped and none aborts the process.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "ferry/error.hpp"

namespace ferry::cuda::detail {

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  fail(ErrorCategory::CUDA, std::string(call) + " failed: " + cudaGetErrorName(status) + " (" +
                                cudaGetErrorString(status) + ") at " + file + ":" + std::to_string(line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  fail(ErrorCategory::CUDA, std::string(call) + " failed: " + cublasGetStatusName(status) + " (" +
                                cublasGetStatusString(status) + ") at " + file + ":" + std::to_string(line));
}

}  // namespace ferry::cuda::detail

#define FERRY_CUDA_CHECK(call)                                                                   \
  do {                                                                                           \
    const cudaError_t ferry_status_ = (call);                                                    \
    if (ferry_status_ != cudaSuccess)                                                            \
      ::ferry::cuda::detail::throw_cuda_error(ferry_status_, #call, __FILE__, __LINE__);         \
  } while (0)

#define FERRY_CUDA_CHECK_LAUNCH() FERRY_CUDA_CHECK(cudaGetLastError())

#define FERRY_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                           \
    const cublasStatus_t ferry_status_ = (call);                                                 \
    if (ferry_status_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::ferry::cuda::detail::throw_cublas_error(ferry_status_, #call, __FILE__, __LINE__);       \
  } while (0)
