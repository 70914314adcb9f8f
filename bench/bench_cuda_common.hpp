// Helpers the CUDA benchmarks share: device memory owned for a benchmark's lifetime and CUDA-event timing of repeated
// runs on one stream. Header-only; not a library header.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

#include "bench_common.hpp"
#include "ferry/kernels/cuda/check.cuh"

namespace ferry::bench {

// Device memory owned for the benchmark's lifetime (at least 256 bytes, so an empty buffer is still a valid pointer).
class DeviceMemory {
 public:
  explicit DeviceMemory(size_t bytes) : m_bytes(bytes) {
    FERRY_CUDA_CHECK(cudaMalloc(&m_ptr, std::max<size_t>(bytes, 256)));
  }
  ~DeviceMemory() { cudaFree(m_ptr); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  template <class T = void>
  T* as() const {
    return static_cast<T*>(m_ptr);
  }
  size_t bytes() const { return m_bytes; }

 private:
  void* m_ptr = nullptr;
  size_t m_bytes;
};

// Times work enqueued on `stream` with a pair of CUDA events, so only device time counts.
class Timer {
 public:
  static constexpr int kWarmups = 2;

  explicit Timer(cudaStream_t stream) : m_stream(stream) {
    FERRY_CUDA_CHECK(cudaEventCreate(&m_start));
    FERRY_CUDA_CHECK(cudaEventCreate(&m_stop));
  }
  ~Timer() {
    cudaEventDestroy(m_start);
    cudaEventDestroy(m_stop);
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Seconds per call of fn(call index), each run timed on its own after kWarmups warm-ups (indices 0 and 1; the
  // timed runs get 2, 3, ...), so a benchmark can rotate through buffers by index.
  Stats time(int runs, const std::function<void(int)>& fn) {
    for (int w = 0; w < kWarmups; ++w) fn(w);
    std::vector<double> t;
    for (int r = 0; r < runs; ++r) {
      FERRY_CUDA_CHECK(cudaEventRecord(m_start, m_stream));
      fn(r + kWarmups);
      FERRY_CUDA_CHECK(cudaEventRecord(m_stop, m_stream));
      FERRY_CUDA_CHECK(cudaEventSynchronize(m_stop));
      float ms = 0;
      FERRY_CUDA_CHECK(cudaEventElapsedTime(&ms, m_start, m_stop));
      t.push_back(ms * 1e-3);
    }
    return stats_of(t);
  }
  // The same for work that does not need the index.
  Stats time(int runs, const std::function<void()>& fn) {
    return time(runs, [&fn](int) { fn(); });
  }

 private:
  cudaStream_t m_stream;
  cudaEvent_t m_start{}, m_stop{};
};

}  // namespace ferry::bench
