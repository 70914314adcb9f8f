// RAII for the CUDA resources offload/ holds: streams, events, cuBLAS handles, device memory. Move-only; destructors
// never throw (a failure while tearing down is ignored: there is nothing sensible left to do with it). Pinned host
// memory has its RAII in host_pool.hpp (detail::HostBlock), which is CUDA-free because the CPU-only build uses it.
// CUDA builds only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "ferry/kernels/cuda/check.cuh"

namespace ferry::cuda {

// A handle with one owner; `Destroy` releases it.
template <class T, void (*Destroy)(T) noexcept>
class UniqueHandle {
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(T handle) noexcept : m_handle(handle) {}
  UniqueHandle(UniqueHandle&& other) noexcept : m_handle(std::exchange(other.m_handle, T{})) {}
  UniqueHandle& operator=(UniqueHandle&& other) noexcept {
    if (this != &other) {
      reset();
      m_handle = std::exchange(other.m_handle, T{});
    }
    return *this;
  }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;
  ~UniqueHandle() { reset(); }

  T get() const noexcept { return m_handle; }
  explicit operator bool() const noexcept { return m_handle != T{}; }
  void reset() noexcept {
    if (m_handle != T{}) Destroy(std::exchange(m_handle, T{}));
  }

 private:
  T m_handle{};
};

namespace detail {
inline void destroy_stream(cudaStream_t s) noexcept { cudaStreamDestroy(s); }
inline void destroy_event(cudaEvent_t e) noexcept { cudaEventDestroy(e); }
inline void destroy_cublas(cublasHandle_t h) noexcept { cublasDestroy(h); }
inline void free_device(void* p) noexcept { cudaFree(p); }
inline void destroy_graph(cudaGraph_t g) noexcept { cudaGraphDestroy(g); }
inline void destroy_graph_exec(cudaGraphExec_t g) noexcept { cudaGraphExecDestroy(g); }
}  // namespace detail

// A non-blocking stream: it does not synchronize with the legacy default stream.
class Stream : public UniqueHandle<cudaStream_t, detail::destroy_stream> {
 public:
  Stream() = default;
  static Stream create() {
    cudaStream_t s = nullptr;
    FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return Stream(s);
  }

 private:
  explicit Stream(cudaStream_t s) : UniqueHandle(s) {}
};

class Event : public UniqueHandle<cudaEvent_t, detail::destroy_event> {
 public:
  Event() = default;
  // Timing events can be measured with cudaEventElapsedTime; the others are cheaper to record and wait on.
  static Event create(bool timing) {
    cudaEvent_t e = nullptr;
    FERRY_CUDA_CHECK(cudaEventCreateWithFlags(&e, timing ? cudaEventDefault : cudaEventDisableTiming));
    return Event(e);
  }

 private:
  explicit Event(cudaEvent_t e) : UniqueHandle(e) {}
};

// Milliseconds between two completed timing events.
inline float elapsed_ms(const Event& from, const Event& to) {
  float ms = 0;
  FERRY_CUDA_CHECK(cudaEventElapsedTime(&ms, from.get(), to.get()));
  return ms;
}

class CublasHandle : public UniqueHandle<cublasHandle_t, detail::destroy_cublas> {
 public:
  CublasHandle() = default;
  static CublasHandle create() {
    cublasHandle_t h = nullptr;
    FERRY_CUBLAS_CHECK(cublasCreate(&h));
    return CublasHandle(h);
  }

 private:
  explicit CublasHandle(cublasHandle_t h) : UniqueHandle(h) {}
};

// A captured stream's work, and its instantiation (what is launched).
using Graph = UniqueHandle<cudaGraph_t, detail::destroy_graph>;
using GraphExec = UniqueHandle<cudaGraphExec_t, detail::destroy_graph_exec>;

// Device memory. In a run only DeviceArena allocates one (the one cudaMalloc of a run); everything else sub-allocates
// from it. `ferry calibrate`, which runs no model, allocates its measuring buffers with it too.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static DeviceBuffer allocate(size_t bytes) {
    void* p = nullptr;
    if (bytes > 0) FERRY_CUDA_CHECK(cudaMalloc(&p, bytes));
    return DeviceBuffer(p, bytes);
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept = default;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept = default;

  void* data() const noexcept { return m_data.get(); }
  size_t size() const noexcept { return m_size; }

 private:
  DeviceBuffer(void* p, size_t bytes) : m_data(p), m_size(bytes) {}
  UniqueHandle<void*, detail::free_device> m_data;
  size_t m_size = 0;
};

}  // namespace ferry::cuda
