// A plan as a file: what `ferry plan --json` writes, read back by `--plan FILE` on the commands that run a model, so a
// person can plan, edit a layer's placement, run and compare (docs/policies.md). Only the fields that decide the run
// are read; the others (memory breakdown, summary, per-layer bytes) are there for people and are ignored:
//   "layers": [{"index" (optional; must be the entry's position), "name": "blk.0", "placement": "resident" |
//              "streamed" | "cpu" | "phased"}, ...]   one entry per layer of the model, blocks in order then the head
//   "phased_cpu_max_tokens": the step size up to which phased layers run on the CPU (optional; the command's default
//                otherwise)
//   "budget_bytes": the VRAM budget it was planned for (optional; used when no --vram is given)
//   "predicted": null or {"prompt_tokens_per_s", "generate_tokens_per_s", ...} (optional; printed beside the
//                measured rates when this machine has no rates of its own to predict from)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/offload/placement.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

struct PlanFile {
  std::string path;                // for messages
  std::vector<std::string> names;  // "layers[i].name"
  std::vector<Placement> placements;
  std::optional<uint64_t> budget_bytes;
  std::optional<int64_t> phased_cpu_max_tokens;
  std::optional<double> predicted_prompt_tokens_per_s, predicted_generate_tokens_per_s;
};

// FORMAT naming the path and the key ("layers[3].placement: 'gpu' is not a placement ...") for bad JSON, a missing or
// mistyped key, or an unknown placement.
PlanFile parse_plan_file(std::string_view text, const std::string& path);
// The file read, then parsed; IO naming the path when it cannot be read.
PlanFile read_plan_file(const std::string& path);

// The placements for `stack`, checked against it: FORMAT naming the key when the file has a different number of layers
// or a layer's name is not the model's at that position.
std::vector<Placement> plan_file_placements(const PlanFile& file, const StackProfile& stack);

}  // namespace ferry
