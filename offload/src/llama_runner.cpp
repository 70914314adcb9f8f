#include "ferry/offload/llama_runner.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/llama_cpu.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/host_memory.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/offload/memory_plan.hpp"

namespace ferry {
namespace {

constexpr std::pair<LlamaPolicy, std::string_view> kPolicies[] = {
    {LlamaPolicy::RESIDENT_FIRST, "resident-first"},
    {LlamaPolicy::RESIDENT_STREAM, "resident-stream"},
    {LlamaPolicy::STREAM_ALL, "stream-all"},
    {LlamaPolicy::CPU_ALL, "cpu-all"},
};

SchedulerOptions scheduler_options(const LlamaRunnerOptions& o) {
  SchedulerOptions s;
  s.vram_budget = o.vram_budget;
  s.max_tokens = std::min(o.max_tokens, o.n_ctx);
  s.prefetch_depth = o.prefetch_depth;
  s.trace_path = o.trace_path;
  return s;
}

// The llama stack (blocks, then the head) for a context of n_ctx positions.
std::vector<std::unique_ptr<Layer>> make_layers(const LlamaConfig& config, const LlamaWeights& weights, int64_t n_ctx,
                                                const LlamaStep* step, bool all_logits) {
  std::vector<std::unique_ptr<Layer>> layers;
  for (int64_t i = 0; i < config.n_layer; ++i)
    layers.push_back(std::make_unique<LlamaBlockLayer>(config, weights.layers[i], i, n_ctx, step));
  layers.push_back(std::make_unique<LlamaHeadLayer>(config, weights, step, all_logits));
  return layers;
}

std::vector<const Layer*> pointers(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<const Layer*> out;
  for (const auto& l : layers) out.push_back(l.get());
  return out;
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

std::string_view llama_policy_name(LlamaPolicy policy) noexcept {
  for (const auto& [p, name] : kPolicies)
    if (p == policy) return name;
  return "?";
}

LlamaPolicy parse_llama_policy(std::string_view name) {
  for (const auto& [p, n] : kPolicies)
    if (n == name) return p;
  fail(ErrorCategory::INVALID_ARGUMENT,
       "unknown policy '" + std::string(name) + "' (choose resident-first, resident-stream, stream-all or cpu-all)");
}

LlamaOffloadRunner::LlamaOffloadRunner(const LlamaConfig& config, const LlamaWeights& weights,
                                       const LlamaRunnerOptions& options)
    : m_config(config), m_weights(weights), m_options(options) {
  const size_t n = static_cast<size_t>(config.n_layer) + 1;
  const bool gpu = options.policy != LlamaPolicy::CPU_ALL && options.vram_budget > 0 && gpu_available();
  if (!gpu) {
    build(std::vector<Placement>(n, Placement::CPU));
    return;
  }
  // Layers first (placement-independent), then placements judged by the memory plan of each candidate.
  build({});
  std::vector<Placement> placements;
  try {
    placements = choose_placements(pointers(m_layers), m_options);
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::BUDGET) throw;
    // Too little VRAM even for the policy's smallest plan: say which context would fit, since the KV cache grows with
    // it (a huge --ctx is the usual cause).
    const int64_t fit = largest_fitting_context(m_options.n_ctx, [&](int64_t n) {
      LlamaRunnerOptions o = m_options;
      o.n_ctx = n;
      const auto layers = make_layers(m_config, m_weights, n, &m_step, o.all_logits);
      try {
        choose_placements(pointers(layers), o);
        return true;
      } catch (const Error& inner) {
        if (inner.category() != ErrorCategory::BUDGET) throw;
        return false;
      }
    });
    fail(ErrorCategory::BUDGET, std::string(e.what()) + "\nat --ctx " + std::to_string(m_options.n_ctx) +
                                    largest_context_text(fit));
  }
  build(std::move(placements));
}

std::vector<Placement> LlamaOffloadRunner::choose_placements(const std::vector<const Layer*>& layers,
                                                             const LlamaRunnerOptions& options) {
  const size_t n = layers.size();
  const SchedulerOptions sched = scheduler_options(options);
  std::vector<Placement> placements;
  switch (options.policy) {
    case LlamaPolicy::STREAM_ALL:
      placements.assign(n, Placement::STREAMED);
      plan_memory(scheduler_memory_input(layers, placements, sched), options.vram_budget);  // BUDGET if too small
      break;
    case LlamaPolicy::RESIDENT_STREAM:
      placements.assign(n, Placement::STREAMED);
      placements = resident_first_placement(scheduler_memory_input(layers, placements, sched), options.vram_budget);
      break;
    case LlamaPolicy::RESIDENT_FIRST:
    case LlamaPolicy::CPU_ALL:
      // Like llama.cpp's -ngl: the first layers on the GPU while the plan fits, the rest (and the head, unless
      // everything fits) on the CPU. No staging slots are needed, so the whole budget goes to resident layers.
      placements.assign(n, Placement::CPU);
      for (size_t i = 0; i < n; ++i) {
        placements[i] = Placement::RESIDENT;
        const MemoryPlan plan =
            compute_memory_plan(scheduler_memory_input(layers, placements, sched), options.vram_budget);
        if (plan.required_budget > options.vram_budget) {
          placements[i] = Placement::CPU;
          break;
        }
      }
      break;
  }
  return placements;
}

LlamaOffloadRunner::LlamaOffloadRunner(const LlamaConfig& config, const LlamaWeights& weights,
                                       const LlamaRunnerOptions& options, std::vector<Placement> placements)
    : m_config(config), m_weights(weights), m_options(options) {
  if (placements.size() != static_cast<size_t>(config.n_layer) + 1)
    fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: " + std::to_string(placements.size()) + " placements for " +
                                              std::to_string(config.n_layer) + " blocks and the head");
  build({});
  build(std::move(placements));
}

LlamaOffloadRunner::~LlamaOffloadRunner() = default;

void LlamaOffloadRunner::build(std::vector<Placement> placements) {
  if (m_layers.empty()) {
    if (m_options.n_ctx < 1 || m_options.max_tokens < 1)
      fail(ErrorCategory::INVALID_ARGUMENT, "llama runner: context length and tokens per step must be positive");
    // A step never holds more tokens than the context, and the workspaces are sized for the step.
    m_options.max_tokens = std::min(m_options.max_tokens, m_options.n_ctx);
    m_layers = make_layers(m_config, m_weights, m_options.n_ctx, &m_step, m_options.all_logits);
  }
  if (placements.empty()) return;
  check_host_memory(placements);
  m_x.resize(static_cast<size_t>(m_options.max_tokens * m_config.n_embd));
  m_scheduler = std::make_unique<LayerScheduler>(pointers(m_layers), std::move(placements), scheduler_options(m_options));
}

void LlamaOffloadRunner::check_host_memory(const std::vector<Placement>& placements) const {
  const HostMemoryAvailable available = host_memory_available();
  auto need_at = [&](int64_t n) {
    LlamaRunnerOptions o = m_options;
    o.n_ctx = n;
    const auto layers = make_layers(m_config, m_weights, n, &m_step, o.all_logits);
    return scheduler_host_memory(pointers(layers), placements, scheduler_options(o));
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

void LlamaOffloadRunner::forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits,
                                 bool all_logits) {
  check_forward_arguments(m_config, m_options.n_ctx, tokens, pos0, logits.size(), all_logits);
  if (all_logits && !m_options.all_logits)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "llama runner: logits for every token need LlamaRunnerOptions::all_logits (the output holds one row)");
  const auto n = static_cast<int64_t>(tokens.size());
  for (int64_t start = 0; start < n; start += m_options.max_tokens) {
    const int64_t T = std::min(m_options.max_tokens, n - start);
    const bool last_chunk = start + T == n;
    cpu::embedding_lookup(m_weights.token_embd, tokens.data() + start, T, m_x.data());
    m_step.pos0 = pos0 + start;
    m_step.all_logits = all_logits;
    m_scheduler->step(m_x.data(), T);
    const std::span<const float> out = m_scheduler->output();
    if (all_logits) {
      std::memcpy(logits.data() + start * m_config.n_vocab, out.data(), T * m_config.n_vocab * sizeof(float));
    } else if (last_chunk) {
      std::memcpy(logits.data(), out.data(), m_config.n_vocab * sizeof(float));
    }
  }
}

std::string LlamaOffloadRunner::placement_summary() const {
  std::map<Placement, int> blocks;
  const auto& p = placements();
  for (size_t i = 0; i + 1 < p.size(); ++i) blocks[p[i]]++;
  std::string s = std::to_string(m_config.n_layer) + " blocks:";
  bool first = true;
  for (const auto& [placement, count] : blocks) {
    s += (first ? " " : ", ") + std::to_string(count) + " " + std::string(placement_name(placement));
    first = false;
  }
  return s + "; output head: " + std::string(placement_name(p.back()));
}

}  // namespace ferry
