// Placement as a pure function: a stack's profile, a device's profile, a budget and a policy give a Plan (where each
// layer lives and runs, and the memory that takes, exactly as the scheduler will reserve it). No CUDA, no model
// headers: planners work on any machine, for any machine whose profile they are given.
//
// The policies of today:
// - resident-first: blocks resident in order while they fit, the rest on the CPU (llama.cpp's -ngl);
// - resident-stream: blocks resident in order while they fit, the rest streamed every step;
// - stream-all: nothing resident, every layer streamed (AirLLM / ZeRO-Inference style);
// - cpu-all: everything on the CPU;
// - auto: the placement the cost model (cost_model.hpp) predicts fastest for a workload (a prompt, then generated
//   tokens) among "the first k layers resident, the last m on the CPU, and of the s = n - k - m between them p phased,
//   spread evenly (every s/p-th one), the others streamed", for every k, m and p that fit the budget; it needs a
//   profile with measured rates (`ferry calibrate`) and is resident-stream without one. Phased layers (placement.hpp)
//   stream in a prompt and run on the CPU in decode, while the streamed ones between them keep the link busy: host
//   memory feeds the CPU and the link at once, so decode costs about the larger of their times rather than the sum.
//   Interleaving them lets each CPU layer hide the next streamed layer's copy. auto also picks the step size up to
//   which phased layers stay on the CPU (Plan::phased_cpu_max_tokens): the largest T in 1..kCpuInt8MaxTokens at which
//   the CPU's time for the free layers is still below streaming them (copy vs GPU compute), from the profile's rates.
// Every policy honours manual overrides (overrides.hpp): the forced layers keep their placement and the policy's rule
// places the others (resident-first and resident-stream make the longest prefix of the free layers resident, auto
// searches its family over the free layers). A plan file (plan_file.hpp) replaces the policy altogether. Either is
// refused with the numbers (BUDGET) when it does not fit the budget, or needs a GPU there is none of.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/offload/demand.hpp"
#include "ferry/offload/memory_plan.hpp"
#include "ferry/offload/placement.hpp"
#include "ferry/policies/device_profile.hpp"
#include "ferry/policies/overrides.hpp"
#include "ferry/policies/plan_file.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

enum class Policy { RESIDENT_FIRST, RESIDENT_STREAM, STREAM_ALL, CPU_ALL, AUTO };
std::string_view policy_name(Policy policy) noexcept;
// "resident-first", "resident-stream", "stream-all", "cpu-all", "auto"; throws INVALID_ARGUMENT listing them.
Policy parse_policy(std::string_view name);

struct PlanRequest {
  Policy policy = Policy::RESIDENT_STREAM;
  uint64_t vram_budget = 0;  // 0: no GPU use
  StackOptions options;      // max_tokens must equal the profile's
  // The workload `auto` optimises for (llama-bench's pp512 + tg128 by default).
  int64_t prompt_tokens = 512;
  int64_t generated_tokens = 128;
  // `auto` may place layers PHASED. A runner of several sequences (a server) says no: its steps mix prompt chunks
  // with decode tokens, and each GPU step of a phased layer would move every sequence's cache rows both ways.
  // Layers forced phased (--phased, a plan file) are honoured either way.
  bool allow_phased = true;
  std::vector<PlacementOverride> overrides;  // layers forced to a placement; the policy places the rest
  std::optional<PlanFile> plan_file;         // every layer's placement as the file says; policy and overrides unused
};

struct Plan {
  Policy policy = Policy::CPU_ALL;
  std::vector<Placement> placements;  // one per layer of the profile
  MemoryPlan memory;                  // the device memory it takes (uses_device false when all on the CPU)
  HostMemoryNeed host;                // the host memory the scheduler will reserve
  // The step size up to which PHASED layers run on the CPU (StackOptions::phased_cpu_max_tokens): the request's, or
  // what auto or the plan file chose. The scheduler must be given it, or it runs another plan than predicted.
  int64_t phased_cpu_max_tokens = StackOptions{}.phased_cpu_max_tokens;
  std::string note;  // why the plan is not what was asked for ("auto: no measured rates ..."), or empty
  // "40 layers: 36 resident, 4 streamed" (counts per placement, in placement order; phased ones last).
  std::string summary() const;
};

// Throws BUDGET (with the breakdown and the smallest budget that works) when even the policy's smallest plan does not
// fit the budget; INVALID_ARGUMENT for inconsistent inputs.
Plan make_plan(const StackProfile& stack, const DeviceProfile& device, const PlanRequest& request);

}  // namespace ferry
