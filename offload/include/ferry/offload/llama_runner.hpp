// LlamaOffloadRunner: the llama forward pass under the layer scheduler, so every block can be GPU-resident, streamed
// or on the CPU and the whole run fits a VRAM budget. Token embeddings are looked up on the CPU (T rows of the table,
// read from the mapped file); blocks and the output head run where their placement says.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/generate.hpp"
#include "ferry/llama_model.hpp"
#include "ferry/offload/llama_layers.hpp"
#include "ferry/offload/scheduler.hpp"

namespace ferry {

// How non-resident layers are treated when a placement is chosen from a budget.
enum class LlamaPolicy {
  RESIDENT_FIRST,   // blocks resident in order while they fit, the rest on the CPU (llama.cpp's -ngl)
  RESIDENT_STREAM,  // blocks resident in order while they fit, the rest streamed every step
  STREAM_ALL,       // nothing resident, every block streamed (AirLLM / ZeRO-Inference style)
  CPU_ALL,          // everything on the CPU
};
std::string_view llama_policy_name(LlamaPolicy policy) noexcept;
// "resident-first", "resident-stream", "stream-all", "cpu-all"; throws INVALID_ARGUMENT listing them.
LlamaPolicy parse_llama_policy(std::string_view name);

struct LlamaRunnerOptions {
  int64_t n_ctx = 2048;
  int64_t max_tokens = 512;  // tokens per scheduler step (prefill chunk)
  uint64_t vram_budget = 0;  // 0: no GPU use (CPU_ALL)
  LlamaPolicy policy = LlamaPolicy::RESIDENT_FIRST;
  int prefetch_depth = 1;
  std::string trace_path;
  // forward(..., all_logits = true) allowed: the head's output holds max_tokens rows of logits. Off, it holds one row
  // (the last token's), which is all sampling needs: 0.5 MB instead of 256 MB of VRAM for a 128k vocabulary at 512
  // tokens, and no copy of the unused rows back to the host.
  bool all_logits = false;
};

class LlamaOffloadRunner final : public LlamaBackend {
 public:
  // Chooses placements for the budget and policy (head last; the head follows the blocks' rule), then builds the
  // scheduler: BUDGET with the breakdown if even the policy's smallest plan does not fit.
  LlamaOffloadRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options);
  // Explicit placements: n_layer + 1 entries (blocks, then the head).
  LlamaOffloadRunner(const LlamaConfig& config, const LlamaWeights& weights, const LlamaRunnerOptions& options,
                     std::vector<Placement> placements);
  ~LlamaOffloadRunner() override;

  int64_t n_ctx() const noexcept override { return m_options.n_ctx; }
  int64_t n_vocab() const noexcept override { return m_config.n_vocab; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override;

  const LayerScheduler& scheduler() const noexcept { return *m_scheduler; }
  const std::vector<Placement>& placements() const noexcept { return m_scheduler->placements(); }
  // "40 blocks: 22 resident, 18 cpu; head: resident".
  std::string placement_summary() const;

 private:
  void build(std::vector<Placement> placements);
  // The policy's placements for `layers` (built for options.n_ctx); BUDGET when even its smallest plan does not fit.
  static std::vector<Placement> choose_placements(const std::vector<const Layer*>& layers,
                                                  const LlamaRunnerOptions& options);
  // BUDGET, naming the largest context that would fit, when the scheduler's host memory exceeds what is available.
  void check_host_memory(const std::vector<Placement>& placements) const;

  const LlamaConfig& m_config;
  const LlamaWeights& m_weights;
  LlamaRunnerOptions m_options;
  LlamaStep m_step;
  std::vector<std::unique_ptr<Layer>> m_layers;
  std::unique_ptr<LayerScheduler> m_scheduler;
  std::vector<float> m_x;
};

}  // namespace ferry
