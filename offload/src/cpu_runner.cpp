#include <algorithm>
#include <cstring>

#include "engine.hpp"
#include "ferry/error.hpp"

namespace ferry::detail {

CpuRunner::CpuRunner(const EngineSetup& setup)
    : m_setup(setup), m_arena(setup.options.cpu_threads > 0 ? setup.options.cpu_threads : tbb::task_arena::automatic) {
  std::string ignored;
  m_views.resize(setup.layers.size());
  for (size_t i = 0; i < setup.layers.size(); ++i) {
    HostBlock kv;
    const Placement placement = setup.placements[i];
    if (placement == Placement::CPU || placement == Placement::PHASED) {
      // The views forward() takes, made once: the layer's own host bytes unless use_views() replaces them.
      for (const WeightTensor& t : setup.layers[i]->weights()) m_views[i].push_back(t.view);
      m_workspace_floats = std::max(m_workspace_floats, setup.demands[i].workspace_floats_cpu);
      const uint64_t kv_bytes = setup.layers[i]->kv_cache_bytes();
      // A PHASED layer's GPU steps copy rows of its cache to and from the device on the compute stream: pinned, so
      // the copies are asynchronous (pageable memory would make them stage and block).
      std::string pin_failure;
      kv = HostBlock::allocate(kv_bytes, placement == Placement::PHASED, setup.options.simulate_pin_failure,
                               &pin_failure);
      if (!pin_failure.empty())
        setup.warn("layer '" + setup.layers[i]->name() + "': its KV cache could not be pinned (" + pin_failure +
                   "): the rows its GPU steps move are copied synchronously");
      if (kv_bytes > 0) std::memset(kv.data(), 0, kv_bytes);
    }
    m_kv.push_back(std::move(kv));
  }
  m_workspace = HostBlock::allocate(m_workspace_floats * sizeof(float), false, false, &ignored);
  const Placement last = setup.placements.back();
  if ((last == Placement::CPU || last == Placement::PHASED) && setup.output_floats > 0)
    m_output = HostBlock::allocate(setup.output_floats * sizeof(float), false, false, &ignored);
}

void CpuRunner::run(size_t index, float* x, const StepContext& step, int64_t step_index, StepStats& stats) {
  const Layer& layer = *m_setup.layers[index];
  const bool last = index + 1 == m_setup.layers.size();
  const LayerRun run{&m_ops,
                     reinterpret_cast<float*>(m_workspace.data()),
                     m_workspace_floats,
                     m_kv[index].data(),
                     last ? output() : nullptr,
                     step.inputs.empty() ? nullptr : step.inputs.data()};
  const std::span<const QuantMatrixView> weights = m_views[index];
  const Clock::time_point begin = Clock::now();
  m_arena.execute([&] { layer.forward(weights, x, step, run); });
  const Clock::time_point end = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(end - begin).count();
  stats.cpu_ms += ms;
  if (m_setup.trace != nullptr)
    m_setup.trace->add({"cpu " + layer.name(), TraceTrack::CPU, micros_since(m_setup.epoch, begin), ms * 1e3,
                        step_index, static_cast<int64_t>(index), 0});
}

void CpuRunner::use_views(size_t index, std::vector<QuantMatrixView> views) {
  if (views.size() != m_setup.layers.at(index)->weights().size())
    fail(ErrorCategory::INTERNAL, "layer '" + m_setup.layers[index]->name() + "': " + std::to_string(views.size()) +
                                      " weight views for " + std::to_string(m_setup.layers[index]->weights().size()) +
                                      " tensors");
  m_views[index] = std::move(views);
}

uint64_t CpuRunner::host_bytes() const noexcept {
  uint64_t total = m_workspace.size() + m_output.size();
  for (const HostBlock& kv : m_kv) total += kv.size();
  return total;
}

namespace {

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(const EngineSetup& setup) : m_setup(setup), m_runner(setup) {}

  void step(float* x, const StepContext& step, int64_t step_index, StepStats& stats) override {
    for (size_t i = 0; i < m_setup.layers.size(); ++i) m_runner.run(i, x, step, step_index, stats);
  }

  const float* output() const override { return m_runner.output(); }

  void report(MemoryReport& report) const override {
    report.host_bytes = m_runner.host_bytes();
    report.host_high_water = report.host_bytes;  // everything is allocated at construction
  }

 private:
  const EngineSetup& m_setup;
  CpuRunner m_runner;
};

}  // namespace

std::unique_ptr<Engine> make_cpu_engine(const EngineSetup& setup) { return std::make_unique<CpuEngine>(setup); }

}  // namespace ferry::detail
