// The flags that take the placement out of the planner's hands, shared by every command that runs a model (`run`,
// `chat`, `perplexity`, `plan`): `--resident REGEX`, `--stream REGEX`, `--cpu REGEX`, `--phased REGEX` force the
// layers whose whole name matches (repeatable; overrides.hpp), and `--plan FILE` runs a plan JSON as `ferry plan
// --json` wrote it or a person edited it (plan_file.hpp). --plan excludes --policy and the overrides; its budget is the
// file's budget_bytes unless --vram is given.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ferry/models/llama/runner.hpp"

namespace CLI {
class App;
class Option;
}  // namespace CLI

namespace ferry::cli {

struct OverrideFlags {
  std::vector<std::string> resident, stream, cpu, phased;
  std::string plan;
  CLI::Option* vram = nullptr;  // the command's --vram, to tell "given" from its default
};

// Registers the five flags; `vram` and `policy` are the command's own options (--plan excludes --policy).
void add_override_flags(CLI::App& cmd, OverrideFlags& f, CLI::Option* vram, CLI::Option* policy);

// The overrides and the plan file (read and parsed now, before any model is loaded: IO/FORMAT, exit 1) into the
// runner's options; with --plan and no --vram, the plan's budget_bytes becomes the budget.
void apply_override_flags(const OverrideFlags& f, LlamaRunnerOptions& options);
// The same for any runner: into its overrides, plan file and budget.
void apply_override_flags(const OverrideFlags& f, std::vector<PlacementOverride>& overrides,
                          std::optional<PlanFile>& plan_file, uint64_t& vram_budget);

// How the placement was chosen, for a command's report: "--vram 8GiB, --policy auto, --cpu 'blk\.3'" or "--plan
// FILE, budget 8 GiB".
std::string placement_origin(const OverrideFlags& f, const std::string& vram, const std::string& policy,
                             uint64_t budget);

// The plan's predicted rates beside the measured ones ("predicted (cost model): prompt 812 tokens/s, generation 41.0
// tokens/s; measured: prompt 790, generation 39.8"), from the runner's prediction or else the plan file's; "" when
// there is neither.
std::string predicted_vs_measured(const LlamaRunner& runner, const LlamaRunnerOptions& options,
                                  double measured_prompt_tokens_per_s, double measured_generate_tokens_per_s);

}  // namespace ferry::cli
