#include "ferry/models/flux/runner.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/cpu/cpu_ops.hpp"
#include "ferry/models/stack_support.hpp"

namespace ferry {
namespace {

void check_size(const char* what, size_t size, size_t expected) {
  if (size != expected)
    fail(ErrorCategory::INVALID_ARGUMENT, std::string("flux: ") + what + " has " + std::to_string(size) +
                                              " floats, expected " + std::to_string(expected));
}

}  // namespace

SchedulerOptions flux_scheduler_options(const FluxConfig& config, const FluxRunnerOptions& o) {
  SchedulerOptions s;
  s.vram_budget = o.vram_budget;
  s.max_tokens = o.max_tokens;
  s.prefetch_depth = o.prefetch_depth;
  s.phased_cpu_max_tokens = o.phased_cpu_max_tokens;
  s.trace_path = o.trace_path;
  s.step_input_floats = FluxStepInputs::floats(config, o.max_tokens);
  s.dequant_via_fp32 = o.dequant_via_fp32;
  s.link_gbps = o.link_gbps;
  return s;
}

StackProfile flux_stack_profile(const FluxConfig& config, const FluxWeights& weights, int64_t max_tokens,
                                int64_t text_tokens) {
  const auto layers = make_flux_layers(config, weights, text_tokens);
  StackProfile profile;
  profile.model = "flux";
  profile.max_tokens = max_tokens;
  profile.layers = layer_demands(layer_pointers(layers), max_tokens);
  return profile;
}

StackProfile flux_stack_profile(const GgufFile& file, int64_t max_tokens, int64_t text_tokens) {
  const FluxConfig config = FluxConfig::from_gguf(file);
  const FluxWeights weights = FluxWeights::from_gguf(file, config);
  StackProfile profile = flux_stack_profile(config, weights, max_tokens, text_tokens);
  profile.model = file.name();
  return profile;
}

Plan plan_flux_run(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options,
                   const DeviceProfile& device) {
  if (options.max_tokens < 1) fail(ErrorCategory::INVALID_ARGUMENT, "flux runner: max_tokens must be positive");
  PlanRequest request;
  request.policy = options.policy;
  request.vram_budget = options.vram_budget;
  request.options = flux_scheduler_options(config, options);
  // A Flux step is one model call over every token: `auto` must price steps of max_tokens, with no one-token steps.
  request.prompt_tokens = options.max_tokens;
  request.generated_tokens = 0;
  request.overrides = options.overrides;
  request.plan_file = options.plan_file;
  return make_plan(flux_stack_profile(config, weights, options.max_tokens, options.text_tokens),
                   link_capped(device, options.link_gbps), request);
}

FluxRunner::FluxRunner(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options)
    : m_config(config), m_weights(weights), m_options(options) {
  Plan plan = plan_flux_run(config, weights, options, this_device_profile());
  m_plan_note = plan.note;
  m_options.phased_cpu_max_tokens = plan.phased_cpu_max_tokens;  // the scheduler runs the plan that was made
  build(std::move(plan.placements));
}

FluxRunner::FluxRunner(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options,
                       std::vector<Placement> placements)
    : m_config(config), m_weights(weights), m_options(options) {
  const size_t want = static_cast<size_t>(config.n_double + config.n_single) + 2;
  if (placements.size() != want)
    fail(ErrorCategory::INVALID_ARGUMENT, "flux runner: " + std::to_string(placements.size()) +
                                              " placements for img_in, " + std::to_string(config.n_double) +
                                              " double blocks, " + std::to_string(config.n_single) +
                                              " single blocks and the final layer (" + std::to_string(want) + ")");
  build(std::move(placements));
}

FluxRunner::~FluxRunner() = default;

void FluxRunner::build(std::vector<Placement> placements) {
  if (m_options.max_tokens < 1) fail(ErrorCategory::INVALID_ARGUMENT, "flux runner: max_tokens must be positive");
  m_layers = make_flux_layers(m_config, m_weights, m_options.text_tokens);
  m_scheduler = std::make_unique<LayerScheduler>(layer_pointers(m_layers), std::move(placements),
                                                 flux_scheduler_options(m_config, m_options));
  m_x.resize(static_cast<size_t>(m_options.max_tokens * m_config.hidden));
  m_silu_vec.resize(static_cast<size_t>(m_config.hidden));
}

void FluxRunner::set_text(std::span<const float> txt, int64_t n_txt) {
  if (n_txt < 0 || n_txt >= m_options.max_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "flux: " + std::to_string(n_txt) +
                                              " text tokens leave no room for the image in steps of " +
                                              std::to_string(m_options.max_tokens) + " tokens");
  check_size("the text embeddings", txt.size(), static_cast<size_t>(n_txt * m_config.context_in_dim));
  m_txt.assign(static_cast<size_t>(n_txt * m_config.hidden), 0.0f);
  CpuOps ops;
  flux_text_input(ops, m_config, m_weights.txt_in, txt.data(), n_txt, m_txt.data());
  m_n_txt = n_txt;
}

void FluxRunner::forward(std::span<const float> img, int64_t n_img, std::span<const float> ids, float timestep,
                         float guidance, std::span<const float> y, std::span<float> velocity) {
  const int64_t T = m_n_txt + n_img, h = m_config.hidden, ch = m_config.in_channels;
  if (n_img < 1 || T > m_options.max_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "flux: " + std::to_string(m_n_txt) + " text and " + std::to_string(n_img) +
                                              " image tokens do not fit steps of " +
                                              std::to_string(m_options.max_tokens) + " tokens");
  check_size("the image latents", img.size(), static_cast<size_t>(n_img * ch));
  check_size("the position ids", ids.size(), static_cast<size_t>(T) * m_config.axes_dim.size());
  check_size("the pooled text embedding", y.size(), static_cast<size_t>(m_config.vec_in_dim));
  if (velocity.size() < static_cast<size_t>(n_img * ch))
    fail(ErrorCategory::INVALID_ARGUMENT, "flux: the velocity buffer holds " + std::to_string(velocity.size()) +
                                              " floats, need " + std::to_string(n_img * ch));
  CpuOps ops;
  flux_conditioning(ops, m_config, m_weights, timestep, guidance, y.data(), m_silu_vec.data());
  FluxStepInputs::pack(m_config, m_n_txt, n_img, m_silu_vec, ids, m_inputs);
  // txt rows: txt_in of the prompt; img rows: the latents in their first columns (the input layer reads only those).
  std::copy(m_txt.begin(), m_txt.end(), m_x.begin());
  for (int64_t t = 0; t < n_img; ++t) {
    float* row = m_x.data() + (m_n_txt + t) * h;
    std::memcpy(row, img.data() + t * ch, static_cast<size_t>(ch) * sizeof(float));
    std::fill(row + ch, row + h, 0.0f);
  }
  StepContext step;
  step.n_tokens = T;
  step.inputs = m_inputs;
  m_scheduler->step(m_x.data(), step);
  const std::span<const float> out = m_scheduler->output();
  std::copy(out.begin(), out.begin() + n_img * ch, velocity.begin());
}

std::string FluxRunner::placement_summary() const {
  const auto& p = placements();
  std::map<Placement, int> blocks;
  for (size_t i = 1; i + 1 < p.size(); ++i) blocks[p[i]]++;
  std::string s = "img_in " + std::string(placement_name(p.front())) + "; " + std::to_string(m_config.n_double) +
                  " double + " + std::to_string(m_config.n_single) + " single blocks:";
  bool first = true;
  for (const auto& [placement, count] : blocks) {
    s += (first ? " " : ", ") + std::to_string(count) + " " + std::string(placement_name(placement));
    first = false;
  }
  return s + "; final layer " + std::string(placement_name(p.back()));
}

}  // namespace ferry
