// Helpers for the CUDA kernel tests (test_ops_cuda, test_dequant_cuda, test_matmul_cuda): device buffers with guard
// bytes, a stream, a cuBLAS handle, random GGUF blocks, and (through support/env_flag.hpp) FERRY_TEST_QUICK. Tests
// allocate their own device memory here because they check kernels in isolation from the arena; library code never
// calls cudaMalloc.
#pragma once

#include <doctest/doctest.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "support/block_fields.hpp"
#include "support/env_flag.hpp"

namespace ferry::test {

// Device memory with kGuard bytes before and after the payload, filled with a canary pattern so out-of-bounds
// writes by a kernel are caught; `offset` shifts the payload by a few bytes to exercise misaligned-pointer paths.
//
// Every member function is synchronous with respect to the host and to every stream: it waits until the device is
// idle (so a download sees what a kernel on any stream wrote), fills or copies, and waits for that to complete (so
// a kernel queued afterwards on any stream reads it). Plain cudaMemset / cudaMemcpy are not enough: cudaMemset, and
// cudaMemcpy from pageable host memory, may return before the device memory is written, and they run on the legacy
// default stream, which a cudaStreamNonBlocking stream (the tests' and the library's) does not wait for. Under
// `ctest -j3` the canary fill then landed on top of a kernel's output.
class GuardedBuffer {
 public:
  static constexpr size_t kGuard = 256;  // keeps an offset-0 payload 256-byte aligned like the arena's allocations
  static constexpr uint8_t kCanary = 0xA5;

  explicit GuardedBuffer(size_t bytes, size_t offset = 0) : m_bytes(bytes), m_offset(offset) {
    FERRY_CUDA_CHECK(cudaMalloc(&m_base, total()));
    FERRY_CUDA_CHECK(cudaMemset(m_base, kCanary, total()));
    settle();
  }
  // A buffer holding a copy of v.
  template <class T>
  explicit GuardedBuffer(const std::vector<T>& v, size_t offset = 0) : GuardedBuffer(v.size() * sizeof(T), offset) {
    upload(v.data(), bytes());
  }
  ~GuardedBuffer() { cudaFree(m_base); }  // cudaFree waits for the device, so no kernel still uses the memory
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  template <class T = void>
  T* get() const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(m_base) + kGuard + m_offset);
  }
  size_t bytes() const { return m_bytes; }
  void upload(const void* src, size_t n) const {
    REQUIRE(n <= m_bytes);
    settle();
    FERRY_CUDA_CHECK(cudaMemcpy(get(), src, n, cudaMemcpyHostToDevice));
    settle();
  }
  // The first n elements of the payload (all of it by default).
  template <class T>
  std::vector<T> download(size_t n = SIZE_MAX) const {
    if (n == SIZE_MAX) n = m_bytes / sizeof(T);
    REQUIRE(n * sizeof(T) <= m_bytes);
    std::vector<T> v(n);
    settle();
    FERRY_CUDA_CHECK(cudaMemcpy(v.data(), get(), n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  // True when every byte outside the payload still holds the canary.
  bool guards_intact() const {
    std::vector<uint8_t> all(total());
    settle();
    FERRY_CUDA_CHECK(cudaMemcpy(all.data(), m_base, all.size(), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < all.size(); ++i) {
      const bool inside = i >= kGuard + m_offset && i < kGuard + m_offset + m_bytes;
      if (!inside && all[i] != kCanary) return false;
    }
    return true;
  }

 private:
  static void settle() { FERRY_CUDA_CHECK(cudaDeviceSynchronize()); }
  size_t total() const { return m_bytes + 2 * kGuard + m_offset; }
  void* m_base = nullptr;
  size_t m_bytes;
  size_t m_offset;
};

class Stream {
 public:
  Stream() { FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(m_stream); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return m_stream; }
  void sync() const { FERRY_CUDA_CHECK(cudaStreamSynchronize(m_stream)); }

 private:
  cudaStream_t m_stream = nullptr;
};

class Cublas {
 public:
  Cublas() { FERRY_CUBLAS_CHECK(cublasCreate(&m_handle)); }
  ~Cublas() { cublasDestroy(m_handle); }
  Cublas(const Cublas&) = delete;
  Cublas& operator=(const Cublas&) = delete;
  operator cublasHandle_t() const { return m_handle; }

 private:
  cublasHandle_t m_handle = nullptr;
};

// n_elems elements of `type` as raw bytes: every quant, scale and mask bit random, the half scale fields finite with
// magnitudes from 2^-20 (FP16 outputs in the subnormal range) up to `max_scale`. F32/F16/BF16: random finite values
// of every exponent the format has, so conversions meet overflow and subnormals too.
inline std::vector<uint8_t> random_blocks(GgmlType type, int64_t n_elems, uint64_t seed, float max_scale = 1.0f) {
  const TypeTraits& t = type_traits(type);
  const size_t bytes = row_bytes(type, n_elems);
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(bytes);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> expo(-20, -1);
  auto random_scale = [&] {
    const float s = std::ldexp(mant(rng), expo(rng)) * max_scale;
    return (rng() & 1) ? -s : s;
  };
  auto put16 = [&](size_t off, uint16_t h) { std::memcpy(v.data() + off, &h, 2); };
  if (type == GgmlType::F16) {
    for (size_t i = 0; i < bytes; i += 2) {
      uint16_t h;
      std::memcpy(&h, v.data() + i, 2);
      if ((h & 0x7c00u) == 0x7c00u) put16(i, static_cast<uint16_t>(h & 0xbfffu));  // no Inf / NaN
    }
  } else if (type == GgmlType::BF16) {
    for (size_t i = 0; i < bytes; i += 2) {
      uint16_t h;
      std::memcpy(&h, v.data() + i, 2);
      if ((h & 0x7f80u) == 0x7f80u) put16(i, static_cast<uint16_t>(h & 0xbfffu));
    }
  } else if (type == GgmlType::F32) {
    for (size_t i = 0; i < bytes; i += 4) {
      uint32_t u;
      std::memcpy(&u, v.data() + i, 4);
      if ((u & 0x7f800000u) == 0x7f800000u) u &= 0xbfffffffu;
      std::memcpy(v.data() + i, &u, 4);
    }
  } else {
    const auto offsets = half_field_offsets(type);
    for (size_t blk = 0; blk < bytes / t.type_size; ++blk)
      for (int off : offsets) put16(blk * t.type_size + off, fp32_to_fp16(random_scale()));
  }
  return v;
}

inline bool is_nan_half(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }
inline bool is_nan_bf16(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0; }

inline std::string type_label(GgmlType type) { return std::string(type_name(type)); }

}  // namespace ferry::test
