// `ferry bench` of a Flux file: each arm a FluxRunner at its budget and policy, its one test `step`: one denoising
// step of the flow-matching Euler sampler (flux_sample over the schedule's first interval) on latents, text and pooled
// embeddings drawn from N(0, 1) with kBenchTokenSeed, as `ferry flux-step` generates them. Every step starts from the
// same latents, so every sample does the same work.
#include <chrono>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include "bench_arms.hpp"
#include "bench_runner.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/flux/block.hpp"
#include "ferry/models/flux/model.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/models/flux/sampler.hpp"
#include "flux_inputs.hpp"

namespace ferry::cli {
namespace {

using Clock = std::chrono::steady_clock;

// The step's inputs, shared by every arm (each arm copies the latents it steps).
struct FluxWorkload {
  int64_t n_img = 0, n_txt = 0;
  std::vector<float> img, txt, vec, ids;
  std::vector<float> timesteps;  // the first interval of the sampler's schedule: a single step

  FluxWorkload(const FluxConfig& c, const BenchRequest& request)
      : n_img(request.image_tokens()), n_txt(request.text_tokens) {
    GeneratedFluxInputs in = generate_flux_inputs(c, n_img, n_txt, kBenchTokenSeed);
    img = std::move(in.img);
    txt = std::move(in.txt);
    vec = std::move(in.vec);
    ids = flux_position_ids(n_txt, request.image_height / 16, request.image_width / 16);
    const std::vector<float> schedule = flux_timesteps(1, n_img, c.has_guidance);
    timesteps = {schedule[0], schedule[1]};
  }
};

FluxRunnerOptions flux_options(const BenchRequest& request, const BenchArmSpec& spec, const std::string& trace_path) {
  FluxRunnerOptions o;
  o.max_tokens = request.image_tokens() + request.text_tokens;
  o.text_tokens = request.text_tokens;
  o.vram_budget = spec.vram;
  o.policy = spec.policy;
  o.prefetch_depth = request.prefetch;
  o.link_gbps = request.link_gbps;
  o.trace_path = trace_path;
  o.overrides = request.overrides;
  o.plan_file = request.plan_file;
  return o;
}

class FluxArm final : public BenchArmRunner {
 public:
  FluxArm(const FluxConfig& config, const FluxWeights& weights, const BenchRequest& request, const BenchArmSpec& spec,
          const FluxWorkload& w, const std::string& trace_path)
      : m_w(w),
        m_runner(config, weights, flux_options(request, spec, trace_path)),
        m_latents(w.img.size()),
        m_step_tokens(request.image_tokens() + request.text_tokens) {
    m_runner.set_text(w.txt, w.n_txt);
  }

  double sample(size_t) override {
    m_latents = m_w.img;  // outside the timing: every step starts from the same latents
    const Clock::time_point t0 = Clock::now();
    flux_sample(m_runner, m_latents, m_w.n_img, m_w.ids, m_w.vec, m_w.timesteps, kBenchFluxGuidance);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    m_runner.scheduler().wait_idle();
    return s;
  }
  void trace_phase(size_t test) override { (void)sample(test); }
  const LayerScheduler& scheduler() const override { return m_runner.scheduler(); }
  MemoryReport memory() const override { return m_runner.scheduler().memory(); }
  const std::vector<Placement>& placements() const override { return m_runner.placements(); }
  std::string plan_text() const override {
    return m_runner.placement_summary() + (m_runner.plan_note().empty() ? "" : " (" + m_runner.plan_note() + ")");
  }
  int64_t step_tokens() const override { return m_step_tokens; }

 private:
  const FluxWorkload& m_w;
  FluxRunner m_runner;
  std::vector<float> m_latents;
  int64_t m_step_tokens;  // one Flux call: every image and text token at once
};

}  // namespace

BenchReport run_flux_bench(const std::string& path, const BenchRequest& request, BenchEnvironment env,
                           const BenchLog& log) {
  const GgufFile file = GgufFile::open(path);
  const FluxConfig config = FluxConfig::from_gguf(file);
  const FluxWeights weights = FluxWeights::from_gguf(file, config);
  BenchReport report;
  report.env = std::move(env);
  report.request = request;
  report.model.path = path;
  report.model.name = std::filesystem::path(path).filename().string();
  report.model.arch = BenchArch::FLUX;
  report.model.n_layer = config.n_double + config.n_single;
  report.model.n_embd = config.hidden;
  report.model.n_double = config.n_double;
  report.model.n_single = config.n_single;
  report.model.file_bytes = file.file_size();
  const FluxWorkload w(config, request);
  run_bench_arms(
      report,
      [&](const BenchArmSpec& spec, const std::string& trace_path) -> std::unique_ptr<BenchArmRunner> {
        return std::make_unique<FluxArm>(config, weights, request, spec, w, trace_path);
      },
      log);
  return report;
}

}  // namespace ferry::cli
