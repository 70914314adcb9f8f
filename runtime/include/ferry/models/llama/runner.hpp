// LlamaRunner: the llama forward pass under the layer scheduler, with its KV cache. The placement of every block (GPU-
// resident, streamed or CPU) comes from a Plan (policies/), made from the stack's profile, this machine's device
// profile and the budget; the runner only executes it. Token embeddings are looked up on the CPU (T rows of the
// table, read from the mapped file).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ferry/models/llama/layers.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/offload/scheduler.hpp"
#include "ferry/policies/cost_model.hpp"
#include "ferry/policies/planner.hpp"
#include "ferry/text/generate.hpp"

namespace ferry {

struct LlamaRunnerOptions {
  int64_t n_ctx = 2048;
  int64_t max_tokens = 512;  // tokens per scheduler step (prefill chunk)
  uint64_t vram_budget = 0;  // 0: no GPU use (everything on the CPU)
  Policy policy = Policy::RESIDENT_FIRST;
  int prefetch_depth = 1;
  // Steps of at most this many tokens run the PHASED layers on the CPU (StackOptions::phased_cpu_max_tokens); the
  // runner replaces it with its plan's (Plan::phased_cpu_max_tokens: `auto` computes one).
  int64_t phased_cpu_max_tokens = StackOptions{}.phased_cpu_max_tokens;
  std::string trace_path;
  double link_gbps = 0;  // > 0: streamed layers' copies paced to this rate (SchedulerOptions::link_gbps)
  // Decode steps of resident blocks replayed as CUDA graphs (SchedulerOptions::decode_graphs).
  SchedulerOptions::DecodeGraphs decode_graphs = SchedulerOptions::DecodeGraphs::DEFAULT;
  // The GPU layers' fused ops (SchedulerOptions::fused_ops).
  SchedulerOptions::FusedOps fused_ops = SchedulerOptions::FusedOps::DEFAULT;
  // forward(..., all_logits = true) allowed: the head's output holds max_tokens rows of logits. Off, it holds one row
  // (the last token's), which is all sampling needs: 0.5 MB instead of 256 MB of VRAM for a 128k vocabulary at 512
  // tokens, and no copy of the unused rows back to the host.
  bool all_logits = false;
  // The workload the `auto` policy plans for (llama-bench's pp512 + tg128 unless the command knows better).
  int64_t planned_prompt_tokens = 512;
  int64_t planned_generated_tokens = 128;
  std::vector<PlacementOverride> overrides;  // --resident/--stream/--cpu/--phased REGEX: forced layers (overrides.hpp)
  std::optional<PlanFile> plan_file;         // --plan FILE: every layer's placement from the file (plan_file.hpp)
  // KV caches, one per sequence forward_sequences() may run together (a server's parallel requests); the plan
  // accounts for all of them.
  int64_t n_seq = 1;
};

// One sequence's tokens in LlamaRunner::forward_sequences.
struct SequenceChunk {
  int64_t slot = 0;  // the sequence's KV cache, < LlamaRunnerOptions::n_seq
  int64_t pos0 = 0;  // the position of tokens[0]: the cache holds the sequence's positions before it
  std::span<const int32_t> tokens;
  bool want_logits = false;  // the logits of the chunk's last token
};

// The layers of a llama stack (blocks, then the head) for a context of n_ctx positions; their weights are the views
// of `weights` (null data when they come from a header-only file: such layers can be sized, not run).
std::vector<std::unique_ptr<Layer>> make_llama_layers(const LlamaConfig& config, const LlamaWeights& weights,
                                                      int64_t n_ctx, bool all_logits, int64_t n_seq = 1);

// The plan a LlamaRunner with these options executes on `device` (make_plan over the stack's profile): what `ferry
// plan` prints and `ferry run` runs. BUDGET with the breakdown and the largest context that would fit when even the
// policy's smallest plan does not.
Plan plan_llama_run(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                    const DeviceProfile& device);

// The tokens per step a LlamaRunner with these options runs with. `auto` (with a profile that has measured rates, a
// budget and no plan file) also tries steps of 1/2, 1/4, ... of LlamaRunnerOptions::max_tokens, down to
// kMinAutoStepTokens and never below n_seq + 1: a smaller step needs smaller activation buffers and scratch, which can
// keep more layers resident (the 13B Q4_0 model fits whole in 8 GiB at steps of 128 tokens, not at 512), and the
// cost model decides whether the planned workload is faster that way (decode gains, prefill pays more steps). Every
// other case keeps max_tokens (at most n_ctx).
inline constexpr int64_t kMinAutoStepTokens = 64;
int64_t llama_step_tokens(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                          const DeviceProfile& device);

// The host memory a LlamaRunner with these options and placements reserves (its scheduler's: the KV caches of CPU
// layers, the streamed-weight pool, buffers), what the runner checks against host_memory_available().
HostMemoryNeed llama_host_memory(const LlamaConfig& config, const LlamaWeights& weights,
                                 const LlamaRunnerOptions& options, const std::vector<Placement>& placements);

class LlamaRunner final : public CausalLm {
 public:
  // Plans the placement for the budget and policy (make_plan), then builds the scheduler: BUDGET with the breakdown
  // and the largest context that would fit when even the policy's smallest plan does not.
  LlamaRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options);
  // Explicit placements: n_layer + 1 entries (blocks, then the head).
  LlamaRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
              std::vector<Placement> placements);
  ~LlamaRunner() override;

  int64_t n_ctx() const noexcept override { return m_options.n_ctx; }
  int64_t n_vocab() const noexcept override { return m_config.n_vocab; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override;
  // Several sequences in one step, each on its own KV cache: every weight is read once for all their tokens (at most
  // max_step_tokens() in all, at most one chunk per slot). logits: [chunks that want_logits, n_vocab], in chunk
  // order. INVALID_ARGUMENT for a slot out of range or repeated, an overflowing context or too many tokens.
  void forward_sequences(std::span<const SequenceChunk> chunks, std::span<float> logits);
  int64_t n_seq() const noexcept { return m_options.n_seq; }
  int64_t max_step_tokens() const noexcept { return m_options.max_tokens; }

  const LayerScheduler& scheduler() const noexcept { return *m_scheduler; }
  const std::vector<Placement>& placements() const noexcept { return m_scheduler->placements(); }
  // "40 blocks: 22 resident, 18 cpu; output head: resident", and "; steps of 128 tokens (auto, 512 asked)" when
  // `auto` chose smaller steps (llama_step_tokens).
  std::string placement_summary() const;
  // Why the plan is not the policy asked for (Plan::note: `auto` without measured rates), or empty.
  const std::string& plan_note() const noexcept { return m_plan_note; }
  // The cost model's prediction of the plan for the planned workload; nullopt without measured rates or when the
  // placements were given explicitly.
  const std::optional<RunPrediction>& predicted() const noexcept { return m_predicted; }

 private:
  void build_layers();
  void build_scheduler(std::vector<Placement> placements);
  // BUDGET, naming the largest context that would fit, when the scheduler's host memory exceeds what is available.
  void check_host_memory(const std::vector<Placement>& placements) const;

  const LlamaConfig& m_config;
  const LlamaWeights& m_weights;
  LlamaRunnerOptions m_options;
  std::vector<std::unique_ptr<Layer>> m_layers;
  std::unique_ptr<LayerScheduler> m_scheduler;
  std::vector<float> m_x;
  std::vector<int32_t> m_step_tokens;        // forward_sequences' tokens in step order
  std::vector<StepSequence> m_step_entries;  // and their entries
  std::string m_plan_note;
  int64_t m_asked_step_tokens = 0;  // LlamaRunnerOptions::max_tokens as given (at most n_ctx), before `auto` chose
  std::optional<RunPrediction> m_predicted;
};

}  // namespace ferry
