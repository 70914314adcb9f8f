// LayerScheduler's front: argument checks, the choice of engine, step bookkeeping, the trace. The stepping itself is
// in cpu_runner.cpp (CPU engine) and cuda/scheduler_gpu.cpp (GPU engine, with the design note and timeline).
#include "ferry/offload/scheduler.hpp"

#include <algorithm>
#include <cstdio>

#include "backend.hpp"
#include "engine.hpp"
#include "ferry/error.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/host_memory.hpp"
#include "ferry/offload/link_pacing.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {

struct LayerScheduler::Impl {
  detail::EngineSetup setup;
  TraceRecorder trace;
  std::unique_ptr<detail::Engine> engine;
  StepStats last;
  int64_t steps = 0;
};

namespace {

bool any_gpu(const std::vector<Placement>& placements) {
  return std::any_of(placements.begin(), placements.end(), [](Placement p) { return p != Placement::CPU; });
}

void check_arguments(const std::vector<const Layer*>& layers, const std::vector<Placement>& placements,
                     const SchedulerOptions& options) {
  if (layers.empty()) fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: no layers to run");
  if (placements.size() != layers.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: " + std::to_string(layers.size()) + " layers but " +
                                              std::to_string(placements.size()) + " placements");
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i] == nullptr)
      fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: layer " + std::to_string(i) + " is null");
  for (size_t i = 0; i + 1 < layers.size(); ++i)
    if (layers[i] != nullptr && layers[i]->output_floats(options.max_tokens > 0 ? options.max_tokens : 1) > 0)
      fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: layer " + std::to_string(i) + " '" + layers[i]->name() +
                                                "' has an output but is not the last layer");
  const int64_t width = layers[0]->width();
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i]->width() != width || width <= 0)
      fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: layer " + std::to_string(i) + " '" + layers[i]->name() +
                                                "' has width " + std::to_string(layers[i]->width()) + ", layer 0 '" +
                                                layers[0]->name() + "' has " + std::to_string(width) +
                                                ": every layer must read and write the same residual stream");
  if (options.max_tokens < 1)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "scheduler: max_tokens is " + std::to_string(options.max_tokens) + ", expected at least 1");
  if (options.prefetch_depth < 1 || options.prefetch_depth > 4)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "scheduler: prefetch depth " + std::to_string(options.prefetch_depth) + " is outside 1..4");
  if (options.phased_cpu_max_tokens < 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: phased_cpu_max_tokens is " +
                                              std::to_string(options.phased_cpu_max_tokens) + ", expected 0 or more");
  if (options.link_gbps != 0)
    if (const std::string problem = link_rate_problem(options.link_gbps); !problem.empty())
      fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: link rate " + problem);
  if (!any_gpu(placements)) return;
  if (!gpu_available()) {
    size_t first = 0;
    while (placements[first] == Placement::CPU) ++first;
    fail(ErrorCategory::UNSUPPORTED, "scheduler: layer " + std::to_string(first) + " '" + layers[first]->name() +
                                         "' is placed " + std::string(placement_name(placements[first])) + ", but " +
                                         gpu_unavailable_reason() + "; only CPU placement is available here");
  }
  if (options.vram_budget == 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: layers are placed on the GPU but no VRAM budget was given");
}

}  // namespace

HostMemoryNeed scheduler_host_memory(std::span<const Layer* const> layers, std::span<const Placement> placements,
                                     const SchedulerOptions& options) {
  std::vector<const Layer*> l(layers.begin(), layers.end());
  std::vector<Placement> p(placements.begin(), placements.end());
  check_arguments(l, p, options);
  return host_memory_need(layer_demands(l, options.max_tokens), p, options);
}

MemoryPlanInput scheduler_memory_input(std::span<const Layer* const> layers, std::span<const Placement> placements,
                                       const SchedulerOptions& options) {
  std::vector<const Layer*> l(layers.begin(), layers.end());
  std::vector<Placement> p(placements.begin(), placements.end());
  check_arguments(l, p, options);
  return memory_plan_input(layer_demands(l, options.max_tokens), p, options,
                           any_gpu(p) ? detail::context_overhead_bytes() : 0);
}

LayerScheduler::LayerScheduler(std::vector<const Layer*> layers, std::vector<Placement> placements,
                               const SchedulerOptions& options)
    : m_impl(std::make_unique<Impl>()) {
  check_arguments(layers, placements, options);
  detail::EngineSetup& setup = m_impl->setup;
  setup.demands = layer_demands(layers, options.max_tokens);
  {
    const HostMemoryNeed need = host_memory_need(setup.demands, placements, options);
    const HostMemoryAvailable available = host_memory_available();
    if (need.total() > available.bytes)
      fail(ErrorCategory::BUDGET, "host memory: this placement needs " + format_size(need.total()) + " (" +
                                      need.describe() + "), but only " + format_size(available.bytes) +
                                      " can be taken (" + available.source + ")");
  }
  setup.width = layers[0]->width();
  setup.output_floats = layers.back()->output_floats(options.max_tokens);
  setup.layers = std::move(layers);
  setup.placements = std::move(placements);
  setup.options = options;
  setup.epoch = detail::Clock::now();
  setup.trace = options.trace_path.empty() ? nullptr : &m_impl->trace;
  setup.warn = options.warn ? options.warn : WarningSink(default_warning);
  if (!any_gpu(setup.placements)) {
    m_impl->engine = detail::make_cpu_engine(setup);
    return;
  }
#if defined(FERRY_HAVE_CUDA)
  const GpuSizing sizing = gpu_sizing(setup.demands, setup.placements, setup.options);
  const MemoryPlanInput input =
      memory_plan_input(setup.demands, setup.placements, setup.options, detail::context_overhead_bytes());
  m_impl->engine = detail::make_gpu_engine(setup, input, sizing);
#else
  fail(ErrorCategory::INTERNAL, "scheduler: GPU placement passed the checks in a build without CUDA");
#endif
}

LayerScheduler::LayerScheduler(LayerScheduler&&) noexcept = default;
LayerScheduler& LayerScheduler::operator=(LayerScheduler&&) noexcept = default;

LayerScheduler::~LayerScheduler() {
  if (!m_impl) return;
  if (!m_impl->setup.options.trace_path.empty()) {
    try {
      write_trace();
    } catch (const std::exception& e) {
      m_impl->setup.warn(std::string("could not write the trace: ") + e.what());
    }
  }
  m_impl->engine.reset();  // the engine refers to the setup; destroy it first
}

void LayerScheduler::step(float* x, const StepContext& step) {
  const detail::EngineSetup& setup = m_impl->setup;
  const int64_t n_tokens = step.n_tokens;
  if (x == nullptr) fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: step given no activations");
  if (n_tokens < 1 || n_tokens > setup.options.max_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: step over " + std::to_string(n_tokens) +
                                              " tokens; this scheduler was sized for 1.." +
                                              std::to_string(setup.options.max_tokens) + " (max_tokens)");
  if (step.inputs.size() > setup.options.step_input_floats)
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: step given " + std::to_string(step.inputs.size()) +
                                              " input floats; this scheduler was sized for " +
                                              std::to_string(setup.options.step_input_floats) + " (step_input_floats)");
  StepStats& stats = m_impl->last;
  stats = StepStats{};
  stats.step = m_impl->steps;
  stats.n_tokens = n_tokens;
  const auto begin = detail::Clock::now();
  m_impl->engine->step(x, step, m_impl->steps, stats);
  stats.wall_ms = std::chrono::duration<double, std::milli>(detail::Clock::now() - begin).count();
  ++m_impl->steps;
}

const StepStats& LayerScheduler::last_step() const noexcept { return m_impl->last; }

std::span<const float> LayerScheduler::output() const noexcept {
  const float* out = m_impl->engine->output();
  if (out == nullptr || m_impl->last.n_tokens < 1) return {};
  return {out, m_impl->setup.layers.back()->output_floats(m_impl->last.n_tokens)};
}

const std::vector<Placement>& LayerScheduler::placements() const noexcept { return m_impl->setup.placements; }

const TraceRecorder& LayerScheduler::trace() const noexcept { return m_impl->trace; }

void LayerScheduler::wait_idle() const { m_impl->engine->wait_idle(); }

void LayerScheduler::write_trace() const {
  if (m_impl->setup.options.trace_path.empty())
    fail(ErrorCategory::INVALID_ARGUMENT, "scheduler: no trace path was given (SchedulerOptions::trace_path)");
  m_impl->trace.write_chrome_json(m_impl->setup.options.trace_path);
}

MemoryReport LayerScheduler::memory() const {
  MemoryReport report;
  m_impl->engine->report(report);
  return report;
}

std::string MemoryReport::table() const {
  std::string out;
  char line[200];
  if (uses_device) {
    out += "device memory plan:\n" + plan.breakdown();
    std::snprintf(line, sizeof line, "arena: %s reserved, high-water %s\n", format_size(arena_bytes).c_str(),
                  format_size(arena_high_water).c_str());
    out += line;
  } else {
    out += "device: not used (every layer on the CPU)\n";
  }
  std::snprintf(line, sizeof line, "host: %s held (pool %s, %s), high-water %s\n", format_size(host_bytes).c_str(),
                format_size(host_pool_bytes).c_str(), host_pool_pinned ? "pinned" : "pageable",
                format_size(host_high_water).c_str());
  out += line;
  return out;
}

}  // namespace ferry
