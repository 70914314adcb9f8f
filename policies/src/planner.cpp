#include "ferry/policies/planner.hpp"

#include <map>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "ferry/policies/cost_model.hpp"

namespace ferry {
namespace {

constexpr std::pair<Policy, std::string_view> kPolicies[] = {
    {Policy::RESIDENT_FIRST, "resident-first"},
    {Policy::RESIDENT_STREAM, "resident-stream"},
    {Policy::STREAM_ALL, "stream-all"},
    {Policy::CPU_ALL, "cpu-all"},
    {Policy::AUTO, "auto"},
};

MemoryPlanInput input_for(const StackProfile& stack, const DeviceProfile& device, const PlanRequest& request,
                          const std::vector<Placement>& placements) {
  return memory_plan_input(stack.layers, placements, request.options, device.context_bytes);
}

// Like llama.cpp's -ngl: the first layers on the GPU while the plan fits, the rest (and the last layer, unless
// everything fits) on the CPU. No staging slots are needed, so the whole budget goes to resident layers.
std::vector<Placement> resident_first(const StackProfile& stack, const DeviceProfile& device,
                                      const PlanRequest& request) {
  std::vector<Placement> placements(stack.layers.size(), Placement::CPU);
  for (size_t i = 0; i < placements.size(); ++i) {
    placements[i] = Placement::RESIDENT;
    if (compute_memory_plan(input_for(stack, device, request, placements), request.vram_budget).required_budget >
        request.vram_budget) {
      placements[i] = Placement::CPU;
      break;
    }
  }
  return placements;
}

// The fastest predicted placement of the family "first k resident, last m on the CPU, streamed between" that fits.
// Every fixed policy's placement is in the family (resident-stream: m = 0; resident-first: m = n - k; stream-all:
// k = m = 0; cpu-all: m = n), so auto is never predicted slower than any of them. n^2 candidates, each a memory plan
// and two step predictions of O(n): milliseconds for an 80-block model.
std::vector<Placement> fastest_placement(const StackProfile& stack, const DeviceProfile& device,
                                         const PlanRequest& request) {
  const size_t n = stack.layers.size();
  std::vector<Placement> best(n, Placement::CPU);
  double best_s =
      predict_run(stack, best, device, request.prompt_tokens, request.generated_tokens, request.options.prefetch_depth)
          .total_s;
  std::vector<Placement> p(n);
  for (size_t k = 0; k <= n; ++k)
    for (size_t m = 0; k + m <= n; ++m) {
      for (size_t i = 0; i < n; ++i)
        p[i] = i < k ? Placement::RESIDENT : (i >= n - m ? Placement::CPU : Placement::STREAMED);
      if (compute_memory_plan(input_for(stack, device, request, p), request.vram_budget).required_budget >
          request.vram_budget)
        continue;
      const double s =
          predict_run(stack, p, device, request.prompt_tokens, request.generated_tokens, request.options.prefetch_depth)
              .total_s;
      if (s < best_s) {
        best_s = s;
        best = p;
      }
    }
  return best;
}

}  // namespace

std::string_view policy_name(Policy policy) noexcept {
  for (const auto& [p, name] : kPolicies)
    if (p == policy) return name;
  return "?";
}

Policy parse_policy(std::string_view name) {
  for (const auto& [p, n] : kPolicies)
    if (n == name) return p;
  fail(ErrorCategory::INVALID_ARGUMENT, "unknown policy '" + std::string(name) +
                                            "' (choose resident-first, resident-stream, stream-all, cpu-all or auto)");
}

std::string Plan::summary() const {
  std::map<Placement, int> counts;
  for (Placement p : placements) counts[p]++;
  std::string s = std::to_string(placements.size()) + " layers:";
  bool first = true;
  for (const auto& [placement, count] : counts) {
    s += (first ? " " : ", ") + std::to_string(count) + " " + std::string(placement_name(placement));
    first = false;
  }
  return s;
}

Plan make_plan(const StackProfile& stack, const DeviceProfile& device, const PlanRequest& request) {
  if (stack.layers.empty()) fail(ErrorCategory::INVALID_ARGUMENT, "plan: the stack " + stack.model + " has no layers");
  if (request.options.max_tokens != stack.max_tokens)
    fail(ErrorCategory::INVALID_ARGUMENT, "plan: the profile of " + stack.model + " was made for steps of " +
                                              std::to_string(stack.max_tokens) + " tokens, the request is for " +
                                              std::to_string(request.options.max_tokens));
  Plan plan;
  plan.policy = request.policy;
  const size_t n = stack.layers.size();
  const bool gpu = request.policy != Policy::CPU_ALL && request.vram_budget > 0 && device.has_gpu;
  if (!gpu) {
    plan.policy = Policy::CPU_ALL;
    plan.placements.assign(n, Placement::CPU);
  } else {
    switch (request.policy) {
      case Policy::STREAM_ALL:
        plan.placements.assign(n, Placement::STREAMED);
        plan_memory(input_for(stack, device, request, plan.placements), request.vram_budget);  // BUDGET if too small
        break;
      case Policy::RESIDENT_STREAM:
        plan.placements.assign(n, Placement::STREAMED);
        plan.placements =
            resident_first_placement(input_for(stack, device, request, plan.placements), request.vram_budget);
        break;
      case Policy::RESIDENT_FIRST:
      case Policy::CPU_ALL:
        plan.placements = resident_first(stack, device, request);
        break;
      case Policy::AUTO:
        if (device.has_rates()) {
          plan.placements = fastest_placement(stack, device, request);
        } else {
          plan.note =
              "auto: the device profile has no measured rates (run `ferry calibrate`); planned as resident-stream";
          plan.policy = Policy::RESIDENT_STREAM;
          plan.placements.assign(n, Placement::STREAMED);
          plan.placements =
              resident_first_placement(input_for(stack, device, request, plan.placements), request.vram_budget);
        }
        break;
    }
  }
  plan.memory = compute_memory_plan(input_for(stack, device, request, plan.placements), request.vram_budget);
  plan.host = host_memory_need(stack.layers, plan.placements, request.options);
  return plan;
}

}  // namespace ferry
