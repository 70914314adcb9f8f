#include "override_flags.hpp"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"
#include "model_command.hpp"

namespace ferry::cli {

void add_override_flags(CLI::App& cmd, OverrideFlags& f, CLI::Option* vram, CLI::Option* policy) {
  f.vram = vram;
  CLI::Option* resident = cmd.add_option("--resident", f.resident,
                                         "Keep the layers whose whole name matches this regular expression resident "
                                         "on the GPU (e.g. 'blk\\.[0-9]'; repeatable); the policy places the rest");
  CLI::Option* stream = cmd.add_option("--stream", f.stream, "Stream the layers whose name matches (as --resident)");
  CLI::Option* cpu = cmd.add_option("--cpu", f.cpu, "Run the layers whose name matches on the CPU (as --resident)");
  CLI::Option* phased =
      cmd.add_option("--phased", f.phased,
                     "Place the layers whose name matches phased (as --resident): streamed to the GPU in prompt steps, "
                     "run on the CPU in decode steps while the link streams the streamed layers");
  for (CLI::Option* o : {resident, stream, cpu, phased}) o->allow_extra_args(false)->take_all();
  CLI::Option* plan = cmd.add_option("--plan", f.plan,
                                     "Run the placements of a plan JSON as `ferry plan --json` writes it (edited or "
                                     "not; docs/policies.md); its budget unless --vram is given");
  plan->excludes(resident)->excludes(stream)->excludes(cpu)->excludes(phased);
  if (policy != nullptr) plan->excludes(policy);
}

void apply_override_flags(const OverrideFlags& f, std::vector<PlacementOverride>& overrides,
                          std::optional<PlanFile>& plan_file, uint64_t& vram_budget) {
  for (const std::string& p : f.resident) overrides.push_back({"--resident", p, Placement::RESIDENT});
  for (const std::string& p : f.stream) overrides.push_back({"--stream", p, Placement::STREAMED});
  for (const std::string& p : f.cpu) overrides.push_back({"--cpu", p, Placement::CPU});
  for (const std::string& p : f.phased) overrides.push_back({"--phased", p, Placement::PHASED});
  for (const PlacementOverride& o : overrides)
    if (o.pattern.empty()) bad_flag(o.flag, "an empty pattern matches no layer name");
  if (f.plan.empty()) return;
  plan_file = read_plan_file(f.plan);
  if (plan_file->budget_bytes && (f.vram == nullptr || f.vram->count() == 0)) vram_budget = *plan_file->budget_bytes;
}

void apply_override_flags(const OverrideFlags& f, LlamaRunnerOptions& options) {
  apply_override_flags(f, options.overrides, options.plan_file, options.vram_budget);
}

std::string placement_origin(const OverrideFlags& f, const std::string& vram, const std::string& policy,
                             uint64_t budget) {
  if (!f.plan.empty()) return "--plan " + f.plan + ", budget " + format_size(budget);
  std::string s = "--vram " + vram + ", --policy " + policy;
  for (const std::string& p : f.resident) s += ", --resident " + quote_name(p);
  for (const std::string& p : f.stream) s += ", --stream " + quote_name(p);
  for (const std::string& p : f.cpu) s += ", --cpu " + quote_name(p);
  for (const std::string& p : f.phased) s += ", --phased " + quote_name(p);
  return s;
}

std::string predicted_vs_measured(const LlamaRunner& runner, const LlamaRunnerOptions& options,
                                  double measured_prompt_tokens_per_s, double measured_generate_tokens_per_s) {
  double prompt = 0.0, generate = 0.0;
  std::string source;
  if (const auto& p = runner.predicted()) {
    prompt = p->prompt_tokens_per_s;
    generate = p->generate_tokens_per_s;
    source = "cost model, this run's workload";
  } else if (options.plan_file && options.plan_file->predicted_prompt_tokens_per_s &&
             options.plan_file->predicted_generate_tokens_per_s) {
    prompt = *options.plan_file->predicted_prompt_tokens_per_s;
    generate = *options.plan_file->predicted_generate_tokens_per_s;
    source = "the plan file's, for the workload it was planned for";
  } else {
    return options.plan_file ? "predicted:  none (no measured rates here or in the plan file: `ferry calibrate`)\n"
                             : "";
  }
  char line[256];
  std::snprintf(line, sizeof line,
                "predicted:  prompt %.1f tokens/s, generation %.1f tokens/s (%s)\n"
                "measured:   prompt %.1f tokens/s, generation %.1f tokens/s\n",
                prompt, generate, source.c_str(), measured_prompt_tokens_per_s, measured_generate_tokens_per_s);
  return line;
}

}  // namespace ferry::cli
