// LayerScheduler: runs an ordered stack of layers, each RESIDENT, STREAMED or CPU, over T tokens per step, inside a
// hard VRAM budget. Everything it needs is reserved at construction (one device arena of the size the memory plan
// computes, the pinned host pool, pinned activation buffers, CPU workspaces); a step allocates nothing.
// The design note, with the stream timeline, is at the top of offload/src/cuda/scheduler_gpu.cpp.
//
// This header carries no CUDA types: a CPU-only build (FERRY_CUDA=OFF), or a CUDA build on a machine without a GPU,
// runs stacks whose layers are all CPU, and refuses any other placement with UNSUPPORTED saying why.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ferry/offload/demand.hpp"
#include "ferry/offload/host_pool.hpp"
#include "ferry/offload/layer.hpp"
#include "ferry/offload/memory_plan.hpp"
#include "ferry/offload/placement.hpp"
#include "ferry/offload/trace.hpp"

namespace ferry {

// StackOptions (demand.hpp): max_tokens (the largest T a step gets), prefetch_depth (1..4 layers copied ahead of
// compute: S = prefetch_depth + 1 staging slots), the margin, the FP16 tile cap and the cuBLAS workspace.
struct SchedulerOptions : StackOptions {
  uint64_t vram_budget = 0;  // bytes the process may hold on the device (design.md §3); needed when a layer is GPU
  int cpu_threads = 0;       // threads of the oneTBB arena that runs CPU layers; 0: all cores
  bool prefetch_across_steps = true;  // at the end of a step, start copying the next step's first layers
  bool simulate_pin_failure = false;  // test hook: the pinned pool falls back to pageable memory
  std::filesystem::path trace_path;   // non-empty: record spans, write Chrome trace JSON here (atomically)
  // > 0: host-to-device copies of streamed layers are paced to this many GB/s (a simulated slower link,
  // link_pacing.hpp); 0: they run at the link's own speed. Nothing else is paced (resident uploads at construction,
  // activations).
  double link_gbps = 0;
  // How a step's activations (kilobytes) go host-to-device: by the copy engine (cudaMemcpyAsync on the compute
  // stream), or by a kernel reading the pinned buffer over the bus (kernels' cuda/host_read.cuh). A copy queues
  // behind the streamed weights' copies in flight, so compute can wait for layers it does not need yet (measured on
  // the H200: 6.4 ms of a 14.6 ms decode step with two streamed layers); the kernel's reads do not. DEFAULT: the
  // environment's FERRY_ACTIVATION_UPLOAD (copy | kernel), else COPY_ENGINE until the kernel path has been measured
  // on a GPU. KERNEL falls back to the copy engine for a buffer the device cannot read (pageable fallback).
  enum class ActivationUpload { DEFAULT, COPY_ENGINE, KERNEL };
  ActivationUpload activation_upload = ActivationUpload::DEFAULT;
  // Decode steps (one token, one sequence, no step inputs, no trace) as CUDA graphs: each run of consecutive RESIDENT
  // layers that are Layer::replayable() is captured once per bucket of 256 positions and replayed, one launch in
  // place of ~15 per layer; the outputs are bit for bit those of the steps enqueued one kernel at a time. Streamed,
  // phased and CPU layers between the runs go as before. DEFAULT: the environment's FERRY_DECODE_GRAPHS (on | off),
  // else ON.
  enum class DecodeGraphs { DEFAULT, ON, OFF };
  DecodeGraphs decode_graphs = DecodeGraphs::DEFAULT;
  // The GPU layers' fused ops (Ops::rms_norm_matmul_batch, matmul_add, swiglu_matmul_add, rope_store_kv): with ON,
  // steps of up to 8 tokens do the norm, the SwiGLU product and the residual add inside the GEMV and RoPE with the
  // KV-cache store in one kernel (a llama block's decode step: 7 kernels instead of 15); OFF runs each op's own kernel.
  // The results agree up to rounding (not bit for bit: the fused norm sums its squares in another order). DEFAULT: the
  // environment's FERRY_FUSED_OPS (on | off), else ON (the whole GPU suite passed with them on, H100, 2026-12-06).
  enum class FusedOps { DEFAULT, ON, OFF };
  FusedOps fused_ops = FusedOps::DEFAULT;
  WarningSink warn;  // null: default_warning (stderr)
};

// What a DEFAULT setting resolves to: the environment's FERRY_ACTIVATION_UPLOAD (copy | kernel; unset: copy),
// FERRY_DECODE_GRAPHS (on | off; unset: on) and FERRY_FUSED_OPS (on | off; unset: on). INVALID_ARGUMENT naming the
// variable for any other value.
SchedulerOptions::ActivationUpload resolve_activation_upload(SchedulerOptions::ActivationUpload asked);
bool resolve_decode_graphs(SchedulerOptions::DecodeGraphs asked);
bool resolve_fused_ops(SchedulerOptions::FusedOps asked);

// Timings of the last step. GPU times come from CUDA events on the stream that did the work.
struct StepStats {
  int64_t step = -1;
  int64_t n_tokens = 0;
  double wall_ms = 0;         // host: step() from entry to return
  double gpu_ms = 0;          // compute stream: from the step's first to its last event
  double gpu_compute_ms = 0;  // sum over GPU layers of their compute spans
  double copy_ms = 0;         // sum over streamed layers of their copy spans
  uint64_t copy_bytes = 0;
  double cpu_ms = 0;            // sum over CPU layers (host clock)
  double host_wait_ms = 0;      // the host blocked on the GPU for a CPU layer's input
  int64_t replayed_layers = 0;  // layers run within CUDA graphs (SchedulerOptions::decode_graphs)
  double copy_gbps() const noexcept { return copy_ms > 0 ? static_cast<double>(copy_bytes) / (copy_ms * 1e6) : 0; }
};

struct MemoryReport {
  MemoryPlan plan;  // what was reserved, per category
  bool uses_device = false;
  uint64_t arena_bytes = 0;  // the one device reservation
  uint64_t arena_high_water = 0;
  CategoryBytes arena_used{};  // per category
  uint64_t host_pool_bytes = 0;
  bool host_pool_pinned = false;
  uint64_t host_bytes = 0;  // all host memory the scheduler holds: pool, activation buffers, workspace, KV
  uint64_t host_high_water = 0;
  std::string table() const;
};

class LayerScheduler {
 public:
  // Layers are borrowed: they (and their host weight bytes) must outlive the scheduler. Throws INVALID_ARGUMENT for
  // inconsistent arguments, UNSUPPORTED for GPU placements without a GPU, BUDGET (before any device allocation) when
  // the plan does not fit options.vram_budget, and BUDGET (before any host allocation) when the host memory it needs
  // (scheduler_host_memory) exceeds what the process can still take (host_memory_available).
  LayerScheduler(std::vector<const Layer*> layers, std::vector<Placement> placements, const SchedulerOptions& options);
  LayerScheduler(LayerScheduler&&) noexcept;
  LayerScheduler& operator=(LayerScheduler&&) noexcept;
  ~LayerScheduler();

  // x: host [step.n_tokens, width], 1 <= n_tokens <= max_tokens; run through every layer in order, in place.
  void step(float* x, const StepContext& step);
  void step(float* x, int64_t n_tokens) { step(x, StepContext{n_tokens}); }

  const StepStats& last_step() const noexcept;
  // The last layer's output of the last step (Layer::output_floats of its token count), on the host; empty when the
  // last layer has none or before the first step. Valid until the next step.
  std::span<const float> output() const noexcept;
  MemoryReport memory() const;
  const std::vector<Placement>& placements() const noexcept;
  const TraceRecorder& trace() const noexcept;
  // Blocks until work the last step left running is done (the copies it issued ahead for the next step), so a
  // caller that times something else next (another scheduler, in a benchmark) does not share the link with it.
  void wait_idle() const;
  // Writes the trace recorded so far to options.trace_path (the destructor does it too, reporting failures through
  // the warning sink since it must not throw).
  void write_trace() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> m_impl;
};

// Host memory the scheduler reserves at construction for these arguments (host_memory_need of their demands).
HostMemoryNeed scheduler_host_memory(std::span<const Layer* const> layers, std::span<const Placement> placements,
                                     const SchedulerOptions& options);

// The memory plan input the scheduler builds for these arguments (the GPU part measures the context overhead once per
// process), without reserving anything: for tests, benchmarks and planners that need the minimum or required budget.
MemoryPlanInput scheduler_memory_input(std::span<const Layer* const> layers, std::span<const Placement> placements,
                                       const SchedulerOptions& options);

}  // namespace ferry
