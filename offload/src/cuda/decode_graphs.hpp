// Decode steps replayed as CUDA graphs (SchedulerOptions::decode_graphs), for the GPU engine.
//
// Why. A decode step of a small model is bound by launches, not by the GPU: a llama block is ~15 kernels of a few
// microseconds each, and the host takes about as long to enqueue each one (SmolLM2-135M on the H200: 435 tokens/s
// with 30 blocks, ~75 us per block). A graph launches a whole run of layers at once; the GPU then runs the kernels
// back to back.
//
// How. A run of consecutive RESIDENT, Layer::replayable() layers is captured once (stream capture of the very calls
// the direct path makes, with CudaOps reading the step's position on the device: cuda::DevicePosition) and replayed
// for every later step of the same shape whose position lies in the same bucket of kBucket positions. Each step
// writes its position to the device first (one tiny kernel). Decode attention splits the KV length for the bucket's
// largest position, replayed or not (kAttentionDecodeSplitGranule), so a replay computes bit for bit what the direct
// path computes. A new bucket, a step of another shape or another run of layers re-captures (one capture per 256
// tokens generated: a few milliseconds).
//
// Invariants. A replay never reaches past a layer's position_limit() (the direct path refuses such a step with the
// layer's own message). A capture that fails with a CUDA or UNSUPPORTED error (a layer that enqueues something a graph
// cannot hold, such as attention's chunked path) ends the capture, turns graphs off for the engine with one warning,
// and leaves the step to the direct path; any other error (a layer refusing the step) leaves graphs on, and the
// direct path raises it again.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/cuda_ops.cuh"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/host_pool.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry::detail {

// The work a capture records, passed by reference: a std::function would allocate for a lambda of a few captures, in
// every decode step, where a step allocates nothing. The callable must outlive the call it is passed to.
class EnqueueRef {
 public:
  template <class F>
  EnqueueRef(F& f) noexcept  // NOLINT(google-explicit-constructor): a lambda at the call site
      : m_object(&f), m_call([](void* object) { (*static_cast<F*>(object))(); }) {}
  void operator()() const { m_call(m_object); }

 private:
  void* m_object;
  void (*m_call)(void*);
};

class DecodeGraphs {
 public:
  static constexpr int64_t kBucket = cuda::kAttentionDecodeSplitGranule;

  // device_position: one int32 of device memory (the arena's); ops: the ops the layers are given, on `stream`.
  DecodeGraphs(CudaOps& ops, cudaStream_t stream, int32_t* device_position, size_t n_layers, WarningSink warn);

  // Whether a step may replay: one token of one sequence, no step inputs, and graphs not turned off.
  bool applies(const StepContext& step) const;
  // Before the first run() of each step.
  void begin_step() { m_position_written = false; }
  // Enqueues layers [first, last] of the step as one graph launch, capturing the graph first when none holds this
  // run, shape and bucket; `enqueue` enqueues the layers' work the direct way (called only while capturing). Returns
  // false with nothing enqueued when the step goes past position_limit (the smallest of the layers') or the capture
  // failed: the caller then runs the layers itself.
  bool run(size_t first, size_t last, const StepContext& step, int64_t position_limit, EnqueueRef enqueue);

  int64_t captures() const noexcept { return m_captures; }

 private:
  struct Shape {
    size_t last = 0;
    bool sequences = false;  // the step named its one sequence (StepContext::sequences) rather than pos0 alone
    int64_t slot = 0;
    bool all_logits = false;
    int64_t logit_rows = 0;
    int64_t bucket = -1;
    int64_t max_position = 0;  // the largest position a replay may write
    bool operator==(const Shape&) const = default;
  };
  struct Run {
    Shape shape;
    cuda::GraphExec exec;
  };
  bool capture(Run& run, const Shape& shape, int64_t position, EnqueueRef enqueue);

  CudaOps& m_ops;
  cudaStream_t m_stream;
  int32_t* m_device_position;
  WarningSink m_warn;
  std::vector<Run> m_runs;  // by the run's first layer
  bool m_off = false;
  bool m_position_written = false;
  int64_t m_captures = 0;
};

}  // namespace ferry::detail
