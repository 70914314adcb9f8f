// FluxRunner: one Flux model call (the velocity of one denoising step) under the layer scheduler. The placement of
// every layer (GPU-resident, streamed or CPU) comes from a Plan (policies/) made from the stack's profile, this
// machine's device profile and the budget; the runner executes it. On the host it keeps txt_in of the prompt (once
// per prompt) and computes the conditioning vector every call (time_in, guidance_in, vector_in: one vector each).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ferry/models/flux/layers.hpp"
#include "ferry/models/flux/model.hpp"
#include "ferry/offload/scheduler.hpp"
#include "ferry/policies/planner.hpp"

namespace ferry {

class GgufFile;

struct FluxRunnerOptions {
  int64_t max_tokens = 4608;  // n_txt + n_img of the largest call (1024 x 1024 with 512 text tokens)
  int64_t text_tokens = 512;  // n_txt of the calls planned for: the plan prices each stream at its tokens
  uint64_t vram_budget = 0;   // 0: no GPU use (everything on the CPU)
  Policy policy = Policy::RESIDENT_STREAM;
  int prefetch_depth = 1;
  // StackOptions::phased_cpu_max_tokens; the runner replaces it with its plan's. A Flux step is far larger than any
  // threshold: its phased layers always stream.
  int64_t phased_cpu_max_tokens = StackOptions{}.phased_cpu_max_tokens;
  double link_gbps = 0;  // > 0: streamed layers' copies paced to this rate (SchedulerOptions::link_gbps)
  std::string trace_path;
  bool dequant_via_fp32 = false;             // benchmark only: StackOptions::dequant_via_fp32
  std::vector<PlacementOverride> overrides;  // --resident/--stream/--cpu/--phased REGEX: forced layers (overrides.hpp)
  std::optional<PlanFile> plan_file;         // --plan FILE: every layer's placement from the file (plan_file.hpp)
};

// The stack as a planner sees it: the layers' own demands at steps of max_tokens of which text_tokens are text (the
// rest image), each matrix priced at the rows it multiplies (make_flux_layers).
StackProfile flux_stack_profile(const FluxConfig& config, const FluxWeights& weights, int64_t max_tokens,
                                int64_t text_tokens);
// From a file's header (GgufFile::open_header is enough). Throws what FluxConfig/FluxWeights::from_gguf throw.
StackProfile flux_stack_profile(const GgufFile& file, int64_t max_tokens, int64_t text_tokens);
// The scheduler options a Flux stack of max_tokens runs with (step_input_floats set).
SchedulerOptions flux_scheduler_options(const FluxConfig& config, const FluxRunnerOptions& options);
// The plan FluxRunner executes for `options` on `device` (what `ferry plan` prints for a Flux file): make_plan over
// flux_stack_profile with steps of exactly max_tokens. BUDGET with the breakdown and the smallest budget that works.
Plan plan_flux_run(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options,
                   const DeviceProfile& device);

class FluxRunner {
 public:
  // Plans the placement for the budget and policy (make_plan: BUDGET with the breakdown when even the policy's
  // smallest plan does not fit), then builds the scheduler.
  FluxRunner(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options);
  // Explicit placements: n_double + n_single + 2 entries (img_in, the blocks, the final layer).
  FluxRunner(const FluxConfig& config, const FluxWeights& weights, const FluxRunnerOptions& options,
             std::vector<Placement> placements);
  ~FluxRunner();

  // The prompt for the following calls: txt [n_txt, context_in_dim] T5 embeddings; txt_in runs once, here.
  void set_text(std::span<const float> txt, int64_t n_txt);
  // velocity [n_img, in_channels] of packed latents img [n_img, in_channels] at `timestep` (in [0, 1]); ids are the
  // position ids [n_txt + n_img, n_axes] (flux_position_ids), y the pooled embedding [vec_in_dim]; guidance is
  // ignored by a model without guidance_in. INVALID_ARGUMENT naming the input whose size is wrong.
  void forward(std::span<const float> img, int64_t n_img, std::span<const float> ids, float timestep, float guidance,
               std::span<const float> y, std::span<float> velocity);

  int64_t n_txt() const noexcept { return m_n_txt; }
  const LayerScheduler& scheduler() const noexcept { return *m_scheduler; }
  const std::vector<Placement>& placements() const noexcept { return m_scheduler->placements(); }
  // "img_in resident; 19 double + 38 single blocks: 12 resident, 45 streamed; final layer resident".
  std::string placement_summary() const;
  // Why the plan is not the policy asked for (Plan::note: `auto` without measured rates), or empty.
  const std::string& plan_note() const noexcept { return m_plan_note; }

 private:
  void build(std::vector<Placement> placements);

  const FluxConfig& m_config;
  const FluxWeights& m_weights;
  FluxRunnerOptions m_options;
  std::vector<std::unique_ptr<Layer>> m_layers;
  std::unique_ptr<LayerScheduler> m_scheduler;
  std::vector<float> m_txt;  // txt_in of the prompt [n_txt, hidden]
  int64_t m_n_txt = 0;
  std::vector<float> m_x, m_silu_vec, m_inputs;
  std::string m_plan_note;
};

}  // namespace ferry
