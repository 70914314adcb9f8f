// What LayerScheduler runs a step with: the CPU engine (every layer on the CPU, no device touched) or the GPU engine
// (cuda/scheduler_gpu.cpp, CUDA builds only). Not a public header.
#pragma once

#include <tbb/task_arena.h>

#include <chrono>
#include <memory>
#include <vector>

#include "ferry/kernels/cpu/cpu_ops.hpp"
#include "ferry/offload/demand.hpp"
#include "ferry/offload/host_pool.hpp"
#include "ferry/offload/scheduler.hpp"

namespace ferry::detail {

using Clock = std::chrono::steady_clock;

struct EngineSetup {
  std::vector<const Layer*> layers;
  std::vector<Placement> placements;
  SchedulerOptions options;
  std::vector<LayerDemand> demands;  // each layer's needs at max_tokens
  int64_t width = 0;
  size_t output_floats = 0;        // the last layer's output at max_tokens (0: the stack has no output)
  Clock::time_point epoch;         // time zero of the trace
  TraceRecorder* trace = nullptr;  // null: not tracing
  WarningSink warn;                // never null here
};

inline double micros_since(Clock::time_point epoch, Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t - epoch).count();
}

// Runs CPU layers on a oneTBB task_arena with their own host workspace and KV caches (allocated here, once).
class CpuRunner {
 public:
  explicit CpuRunner(const EngineSetup& setup);
  // Layer `index` on host activations x [n_tokens, width]; adds its time to stats.cpu_ms and records a CPU span.
  void run(size_t index, float* x, const StepContext& step, int64_t step_index, StepStats& stats);
  uint64_t host_bytes() const noexcept;
  // Layer `index`'s host KV cache (CPU and PHASED layers; empty for the others).
  const HostBlock& kv_cache(size_t index) const { return m_kv.at(index); }
  // Layer `index` reads these views of its weights instead of the layer's own host bytes: a PHASED layer's copy in
  // the pinned pool, so its weights are in host memory once (the pool), not also in the model file's pages.
  void use_views(size_t index, std::vector<QuantMatrixView> views);
  // The host output buffer (setup.output_floats floats) when the last layer runs on the CPU, else null.
  float* output() const noexcept { return reinterpret_cast<float*>(m_output.data()); }

 private:
  const EngineSetup& m_setup;
  tbb::task_arena m_arena;
  CpuOps m_ops;
  HostBlock m_workspace;
  size_t m_workspace_floats = 0;
  std::vector<HostBlock> m_kv;  // per layer (empty block for GPU layers)
  // Per CPU or PHASED layer: the weight views forward() takes (the layer's own, or use_views()'s); empty for others.
  std::vector<std::vector<QuantMatrixView>> m_views;
  HostBlock m_output;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual void step(float* x, const StepContext& step, int64_t step_index, StepStats& stats) = 0;
  virtual void report(MemoryReport& report) const = 0;
  // Host copy of the last layer's output after a step (setup.output_floats floats), or null without one.
  virtual const float* output() const = 0;
  // Returns when no work of this engine is in flight (LayerScheduler::wait_idle).
  virtual void wait_idle() const {}
};

std::unique_ptr<Engine> make_cpu_engine(const EngineSetup& setup);

#if defined(FERRY_HAVE_CUDA)
// Throws BUDGET (before any device allocation) when `input` does not fit the budget.
std::unique_ptr<Engine> make_gpu_engine(const EngineSetup& setup, const MemoryPlanInput& input,
                                        const GpuSizing& sizing);
#endif

}  // namespace ferry::detail
