// Helpers the CUDA benchmarks share: device memory owned for a benchmark's lifetime, CUDA-event timing of repeated
// runs on one stream, and a sampler of the lowest free device memory during a run. Header-only; not a library header.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <thread>
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
  // Fill and upload complete before they return: cudaMemset, and cudaMemcpy from pageable memory, may return before
  // the device memory is written, on the legacy default stream, which the benchmarks' cudaStreamNonBlocking streams
  // do not wait for; a kernel timed or validated right after could read the old contents.
  void fill(int byte) const {
    FERRY_CUDA_CHECK(cudaMemset(m_ptr, byte, m_bytes));
    FERRY_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void upload(const void* src, size_t n, size_t offset = 0) const {
    FERRY_CUDA_CHECK(cudaMemcpy(static_cast<char*>(m_ptr) + offset, src, n, cudaMemcpyHostToDevice));
    FERRY_CUDA_CHECK(cudaDeviceSynchronize());
  }

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

// The device's copy rate: device-to-device cudaMemcpy of 1 GiB, bytes read + written per second (the measurable
// stand-in for the memory bound that the kernels' rates are compared with).
inline double measure_copy_rate(Timer& timer, cudaStream_t stream, int runs, Stats* out) {
  const size_t bytes = size_t{1} << 30;
  DeviceMemory a(bytes), b(bytes);
  a.fill(0x5a);
  const Stats s = timer.time(
      runs, [&](int) { FERRY_CUDA_CHECK(cudaMemcpyAsync(b.as(), a.as(), bytes, cudaMemcpyDeviceToDevice, stream)); });
  *out = s;
  return 2.0 * static_cast<double>(bytes) / s.median;
}

// Polls cudaMemGetInfo on its own thread and keeps the lowest free memory seen, so transient peaks inside a run (not
// only the state before and after it) count against the budget.
class FreeMemorySampler {
 public:
  FreeMemorySampler() : m_lowest(free_now()) {
    m_thread = std::thread([this] {
      while (!m_stop.load(std::memory_order_relaxed)) {
        size_t free_bytes = 0, total = 0;
        if (cudaMemGetInfo(&free_bytes, &total) == cudaSuccess) observe(free_bytes);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  ~FreeMemorySampler() { stop(); }
  FreeMemorySampler(const FreeMemorySampler&) = delete;
  FreeMemorySampler& operator=(const FreeMemorySampler&) = delete;

  uint64_t stop() {
    if (m_thread.joinable()) {
      m_stop = true;
      m_thread.join();
      observe(free_now());
    }
    return m_lowest.load();
  }

  static uint64_t free_now() {
    size_t free_bytes = 0, total = 0;
    FERRY_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    return free_bytes;
  }

 private:
  void observe(uint64_t v) {
    uint64_t cur = m_lowest.load();
    while (v < cur && !m_lowest.compare_exchange_weak(cur, v)) {
    }
  }

  std::atomic<bool> m_stop{false};
  std::atomic<uint64_t> m_lowest;
  std::thread m_thread;
};

}  // namespace ferry::bench
