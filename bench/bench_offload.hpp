// Helpers of bench_offload: copy-rate limits and stack runs (the device-memory sampler is in bench_cuda_common.hpp).
// Not a library header.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench_common.hpp"
#include "bench_cuda_common.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/offload/cuda/device_arena.hpp"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/host_pool.hpp"
#include "ferry/offload/scheduler.hpp"
#include "support/synthetic_stack.hpp"

namespace ferry::bench {

// Host-to-device copy rate of `bytes` from pinned or pageable memory (GB/s, median of `runs` after a warm-up), into
// a device buffer taken from a DeviceArena like everything else on the device.
inline Stats h2d_rate(uint64_t bytes, bool pinned, int runs) {
  MemoryPlanInput in;
  in.layers = {{bytes, 0, Placement::RESIDENT}};
  cuda::DeviceArena arena(compute_memory_plan(in, 0));
  void* device = arena.allocate(MemoryCategory::RESIDENT_WEIGHTS, bytes, "copy target");
  std::string reason;
  detail::HostBlock host = detail::HostBlock::allocate(bytes, pinned, false, &reason);
  // A pinned limit measured on pageable memory would make every ratio against it wrong: refuse to report it.
  if (pinned && !host.pinned())
    fail(ErrorCategory::IO,
         "bench: could not pin " + std::to_string(bytes) + " bytes for the pinned copy limit (" + reason + ")");
  for (uint64_t i = 0; i < bytes; i += 4096) host.data()[i] = static_cast<std::byte>(i * 2654435761u >> 24);
  cuda::Stream stream = cuda::Stream::create();
  cuda::Event begin = cuda::Event::create(true), end = cuda::Event::create(true);
  std::vector<double> rates;
  for (int r = -1; r < runs; ++r) {
    FERRY_CUDA_CHECK(cudaEventRecord(begin.get(), stream.get()));
    FERRY_CUDA_CHECK(cudaMemcpyAsync(device, host.data(), bytes, cudaMemcpyHostToDevice, stream.get()));
    FERRY_CUDA_CHECK(cudaEventRecord(end.get(), stream.get()));
    FERRY_CUDA_CHECK(cudaEventSynchronize(end.get()));
    if (r >= 0) rates.push_back(static_cast<double>(bytes) / (cuda::elapsed_ms(begin, end) * 1e6));
  }
  return stats_of(rates);
}

// `runs` steps after `warmup` of one scheduler over T tokens; GPU step times (compute-stream events, ms), copy rates.
struct RunResult {
  Stats step_ms, wall_ms, copy_gbps;
  double copy_bytes = 0;
  double gpu_compute_ms = 0;  // median over the timed steps of the summed GPU layer spans
  std::vector<double> step_samples, rate_samples;
};

inline RunResult run_steps(LayerScheduler& s, const SyntheticStack& stack, int64_t n_tokens, int warmup, int runs) {
  const std::vector<float> x0 = stack.make_input(n_tokens, 42);
  std::vector<float> x = x0;
  std::vector<double> step, wall, rate, compute;
  for (int r = -warmup; r < runs; ++r) {
    std::copy(x0.begin(), x0.end(), x.begin());
    s.step(x.data(), n_tokens);
    if (r < 0) continue;
    const StepStats& st = s.last_step();
    step.push_back(st.gpu_ms);
    wall.push_back(st.wall_ms);
    if (st.copy_bytes > 0) rate.push_back(st.copy_gbps());
    compute.push_back(st.gpu_compute_ms);
  }
  RunResult out{stats_of(step),
                stats_of(wall),
                stats_of(rate),
                static_cast<double>(s.last_step().copy_bytes),
                stats_of(compute).median,
                step,
                rate};
  return out;
}

}  // namespace ferry::bench
