#include "ferry/models/llama/runner.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <map>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/models/llama/block.hpp"
#include "ferry/models/llama/profile.hpp"
#include "ferry/models/stack_support.hpp"
#include "ferry/offload/host_memory.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {
namespace {

SchedulerOptions scheduler_options(const LlamaRunnerOptions& o) {
  SchedulerOptions s;
  s.vram_budget = o.vram_budget;
  s.max_tokens = std::min(o.max_tokens, o.n_ctx);  // a step never holds more tokens than the context
  s.prefetch_depth = o.prefetch_depth;
  s.phased_cpu_max_tokens = o.phased_cpu_max_tokens;
  s.trace_path = o.trace_path;
  s.link_gbps = o.link_gbps;
  s.decode_graphs = o.decode_graphs;
  s.fused_ops = o.fused_ops;
  return s;
}

// The device as the cost model must see it: with a simulated slower link, the rate the copies will be paced to, or
// `auto` would stream as much as the real link allows.
DeviceProfile paced_device(const LlamaRunnerOptions& options, const DeviceProfile& device) {
  return link_capped(device, options.link_gbps);
}

StackProfile profile_for(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options) {
  return llama_stack_profile(config, weights, options.n_ctx, options.max_tokens, options.all_logits, options.n_seq);
}

// The plan for the layers of a context of n_ctx positions.
Plan plan_for(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
              const DeviceProfile& device) {
  PlanRequest request;
  request.policy = options.policy;
  request.vram_budget = options.vram_budget;
  request.options = scheduler_options(options);
  request.prompt_tokens = options.planned_prompt_tokens;
  request.generated_tokens = options.planned_generated_tokens;
  request.overrides = options.overrides;
  request.plan_file = options.plan_file;
  request.allow_phased = options.n_seq == 1;  // planner.hpp: a server's mixed steps would move every cache
  return make_plan(profile_for(config, weights, options), paced_device(options, device), request);
}

// The largest context below `n_ctx` for which fits(n) holds, by bisection (more context never needs less memory); 0
// when not even one position fits.
int64_t largest_fitting_context(int64_t n_ctx, const std::function<bool(int64_t)>& fits) {
  int64_t lo = 0, hi = n_ctx;  // fits(lo) holds (or lo = 0), fits(hi) does not
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? lo : hi) = mid;
  }
  return lo;
}

std::string largest_context_text(int64_t n) {
  return n > 0 ? "; the largest context that fits is " + std::to_string(n) + " tokens (--ctx " + std::to_string(n) + ")"
               : "; not even a context of one token fits";
}

}  // namespace

std::vector<std::unique_ptr<Layer>> make_llama_layers(const LlamaConfig& config, const LlamaWeights& weights,
                                                      int64_t n_ctx, bool all_logits, int64_t n_seq) {
  std::vector<std::unique_ptr<Layer>> layers;
  for (int64_t i = 0; i < config.n_layer; ++i)
    layers.push_back(std::make_unique<LlamaBlockLayer>(config, weights.layers[i], i, n_ctx, n_seq));
  layers.push_back(std::make_unique<LlamaHeadLayer>(config, weights, all_logits, n_seq));
  return layers;
}

Plan plan_llama_run(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                    const DeviceProfile& device) {
  try {
    return plan_for(config, weights, options, device);
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::BUDGET) throw;
    // Too little VRAM even for the policy's smallest plan: say which context would fit, since the KV cache grows with
    // it (a huge --ctx is the usual cause).
    const int64_t fit = largest_fitting_context(options.n_ctx, [&](int64_t n) {
      LlamaRunnerOptions o = options;
      o.n_ctx = n;
      try {
        plan_for(config, weights, o, device);
        return true;
      } catch (const Error& inner) {
        if (inner.category() != ErrorCategory::BUDGET) throw;
        return false;
      }
    });
    fail(ErrorCategory::BUDGET,
         std::string(e.what()) + "\nat --ctx " + std::to_string(options.n_ctx) + largest_context_text(fit));
  }
}

int64_t llama_step_tokens(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                          const DeviceProfile& device) {
  const int64_t asked = std::min(options.max_tokens, options.n_ctx);
  if (options.policy != Policy::AUTO || options.plan_file || options.vram_budget == 0 || !device.has_rates())
    return asked;
  const DeviceProfile paced = paced_device(options, device);
  const int64_t smallest = std::max<int64_t>(kMinAutoStepTokens, options.n_seq + 1);
  int64_t best = asked;
  double best_s = std::numeric_limits<double>::infinity();
  // From the asked size down: a smaller step must be predicted faster by more than the model's noise to be chosen.
  constexpr double kMargin = 0.005;
  for (int64_t t = asked; t >= smallest; t /= 2) {
    LlamaRunnerOptions o = options;
    o.max_tokens = t;
    Plan plan;
    try {
      plan = plan_for(config, weights, o, device);
    } catch (const Error& e) {
      if (e.category() != ErrorCategory::BUDGET) throw;
      continue;  // does not fit at this step size; a smaller one may
    }
    const double s = predict_run(profile_for(config, weights, o), plan.placements, paced, o.planned_prompt_tokens,
                                 o.planned_generated_tokens, {o.prefetch_depth, plan.phased_cpu_max_tokens})
                         .total_s;
    if (s < best_s * (1 - kMargin)) {
      best_s = s;
      best = t;
    }
  }
  return best;
}

HostMemoryNeed llama_host_memory(const LlamaConfig& config, const LlamaWeights& weights,
                                 const LlamaRunnerOptions& options, const std::vector<Placement>& placements) {
  const auto layers = make_llama_layers(config, weights, options.n_ctx, options.all_logits, options.n_seq);
  return scheduler_host_memory(layer_pointers(layers), placements, scheduler_options(options));
}

LlamaRunner::LlamaRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options)
    : m_config(config), m_weights(weights), m_options(options) {
  build_layers();
  const DeviceProfile device = this_device_profile();  // first: it measures the context before it exists
  m_asked_step_tokens = m_options.max_tokens;
  m_options.max_tokens = llama_step_tokens(m_config, m_weights, m_options, device);
  Plan plan = plan_llama_run(m_config, m_weights, m_options, device);
  m_plan_note = plan.note;
  m_options.phased_cpu_max_tokens = plan.phased_cpu_max_tokens;  // the scheduler runs the plan that was predicted
  if (const DeviceProfile paced = paced_device(m_options, device); paced.has_rates())
    m_predicted = predict_run(profile_for(m_config, m_weights, m_options), plan.placements, paced,
                              m_options.planned_prompt_tokens, m_options.planned_generated_tokens,
                              {m_options.prefetch_depth, plan.phased_cpu_max_tokens});
  build_scheduler(std::move(plan.placements));
}

LlamaRunner::LlamaRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                         std::vector<Placement> placements)
    : m_config(config), m_weights(weights), m_options(options) {
  if (placements.size() != static_cast<size_t>(config.n_layer) + 1)
    fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: " + std::to_string(placements.size()) + " placements for " +
                                              std::to_string(config.n_layer) + " blocks and the head");
  build_layers();
  build_scheduler(std::move(placements));
}

LlamaRunner::~LlamaRunner() = default;

void LlamaRunner::build_layers() {
  if (m_options.n_ctx < 1 || m_options.max_tokens < 1 || m_options.n_seq < 1)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "llama runner: context length, tokens per step and sequences must be positive");
  m_options.max_tokens = std::min(m_options.max_tokens, m_options.n_ctx);
  m_layers = make_llama_layers(m_config, m_weights, m_options.n_ctx, m_options.all_logits, m_options.n_seq);
}

void LlamaRunner::build_scheduler(std::vector<Placement> placements) {
  check_host_memory(placements);
  m_x.resize(static_cast<size_t>(m_options.max_tokens * m_config.n_embd));
  m_scheduler =
      std::make_unique<LayerScheduler>(layer_pointers(m_layers), std::move(placements), scheduler_options(m_options));
}

void LlamaRunner::check_host_memory(const std::vector<Placement>& placements) const {
  const HostMemoryAvailable available = host_memory_available();
  auto need_at = [&](int64_t n) {
    LlamaRunnerOptions o = m_options;
    o.n_ctx = n;
    return llama_host_memory(m_config, m_weights, o, placements);
  };
  const HostMemoryNeed need = need_at(m_options.n_ctx);
  if (need.total() <= available.bytes) return;
  const int64_t fit =
      largest_fitting_context(m_options.n_ctx, [&](int64_t n) { return need_at(n).total() <= available.bytes; });
  fail(ErrorCategory::BUDGET, "host memory: a context of " + std::to_string(m_options.n_ctx) + " tokens needs " +
                                  format_size(need.total()) + " (" + need.describe() + "), but only " +
                                  format_size(available.bytes) + " can be taken (" + available.source + ")" +
                                  largest_context_text(fit));
}

void LlamaRunner::forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) {
  check_forward_arguments(m_config, m_options.n_ctx, tokens, pos0, logits.size(), all_logits);
  if (all_logits && !m_options.all_logits)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "llama runner: logits for every token need LlamaRunnerOptions::all_logits (the output holds one row)");
  const auto n = static_cast<int64_t>(tokens.size());
  for (int64_t start = 0; start < n; start += m_options.max_tokens) {
    const int64_t T = std::min(m_options.max_tokens, n - start);
    const bool last_chunk = start + T == n;
    cpu::embedding_lookup(m_weights.token_embd, tokens.data() + start, T, m_x.data());
    m_scheduler->step(m_x.data(), StepContext{T, pos0 + start, all_logits});
    const std::span<const float> out = m_scheduler->output();
    if (all_logits) {
      std::memcpy(logits.data() + start * m_config.n_vocab, out.data(), T * m_config.n_vocab * sizeof(float));
    } else if (last_chunk) {
      std::memcpy(logits.data(), out.data(), m_config.n_vocab * sizeof(float));
    }
  }
}

void LlamaRunner::forward_sequences(std::span<const SequenceChunk> chunks, std::span<float> logits) {
  // Step order: every chunk's tokens except the last of those that want logits, then those last tokens, so the
  // head's rows are the step's last ones (StepContext::logit_rows). A sequence split this way has two entries, run in
  // order: its last token attends to the rows its first entry stored.
  m_step_tokens.clear();
  m_step_entries.clear();
  int64_t n_logits = 0, total = 0;
  std::vector<bool> seen(static_cast<size_t>(m_options.n_seq), false);
  for (const SequenceChunk& c : chunks) {
    const auto n = static_cast<int64_t>(c.tokens.size());
    if (c.slot < 0 || c.slot >= m_options.n_seq || seen[static_cast<size_t>(c.slot)])
      fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: sequence slot " + std::to_string(c.slot) +
                                                " is out of range (0.." + std::to_string(m_options.n_seq - 1) +
                                                ") or given twice in one step");
    seen[static_cast<size_t>(c.slot)] = true;
    if (n < 1) fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: an empty chunk for slot " + std::to_string(c.slot));
    check_forward_arguments(m_config, m_options.n_ctx, c.tokens, c.pos0, static_cast<size_t>(m_config.n_vocab), false);
    total += n;
    n_logits += c.want_logits ? 1 : 0;
    const int64_t front = c.want_logits ? n - 1 : n;
    if (front > 0) {
      m_step_entries.push_back({c.slot, c.pos0, front});
      m_step_tokens.insert(m_step_tokens.end(), c.tokens.begin(), c.tokens.begin() + front);
    }
  }
  if (total < 1 || total > m_options.max_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: a step of " + std::to_string(total) +
                                              " tokens; this runner takes 1.." + std::to_string(m_options.max_tokens));
  if (logits.size() < static_cast<size_t>(n_logits * m_config.n_vocab))
    fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: logits buffer of " + std::to_string(logits.size()) +
                                              " floats, need " + std::to_string(n_logits * m_config.n_vocab));
  for (const SequenceChunk& c : chunks) {
    if (!c.want_logits) continue;
    m_step_entries.push_back({c.slot, c.pos0 + static_cast<int64_t>(c.tokens.size()) - 1, 1});
    m_step_tokens.push_back(c.tokens.back());
  }
  cpu::embedding_lookup(m_weights.token_embd, m_step_tokens.data(), total, m_x.data());
  StepContext step{total, 0, false};
  step.sequences = m_step_entries;
  step.logit_rows = std::max<int64_t>(n_logits, 1);
  m_scheduler->step(m_x.data(), step);
  if (n_logits == 0) return;
  const std::span<const float> out = m_scheduler->output();
  std::memcpy(logits.data(), out.data(), static_cast<size_t>(n_logits * m_config.n_vocab) * sizeof(float));
}

std::string LlamaRunner::placement_summary() const {
  std::map<Placement, int> blocks;
  const auto& p = placements();
  for (size_t i = 0; i + 1 < p.size(); ++i) blocks[p[i]]++;
  std::string s = std::to_string(m_config.n_layer) + " blocks:";
  bool first = true;
  for (const auto& [placement, count] : blocks) {
    s += (first ? " " : ", ") + std::to_string(count) + " " + std::string(placement_name(placement));
    first = false;
  }
  s += "; output head: " + std::string(placement_name(p.back()));
  if (std::find(p.begin(), p.end(), Placement::PHASED) != p.end())
    s += "; phased on the CPU in steps of up to " + std::to_string(m_options.phased_cpu_max_tokens) + " tokens";
  if (m_asked_step_tokens > 0 && m_options.max_tokens != m_asked_step_tokens)
    s += "; steps of " + std::to_string(m_options.max_tokens) + " tokens (auto, " +
         std::to_string(m_asked_step_tokens) + " asked)";
  return s;
}

}  // namespace ferry
