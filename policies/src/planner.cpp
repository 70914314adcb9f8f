#include "ferry/policies/planner.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"
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

bool gpu_usable(const DeviceProfile& device, const PlanRequest& request) {
  return request.vram_budget > 0 && device.has_gpu;
}

// Why no layer can go on the GPU (UNSUPPORTED, not BUDGET: no context length would change it).
std::string no_gpu_reason(const DeviceProfile& device) {
  if (device.has_gpu) return "the VRAM budget is 0";
  return device.name == "none" ? "there is no GPU" : "the device profile '" + device.name + "' has no GPU";
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

// The fastest predicted placement of the family "first k free layers resident, last m free layers on the CPU,
// streamed between" that fits; `base` holds the forced placements (every layer free without overrides). Every fixed
// policy's placement is in the family (resident-stream: m = 0; resident-first: m = n - k; stream-all: k = m = 0;
// cpu-all: m = n), so auto is never predicted slower than any of them. n^2 candidates, each a memory plan and two step
// predictions of O(n): milliseconds for an 80-block model.
std::vector<Placement> fastest_placement(const StackProfile& stack, const DeviceProfile& device,
                                         const PlanRequest& request,
                                         const std::vector<std::optional<Placement>>& base) {
  std::vector<size_t> free;
  for (size_t i = 0; i < base.size(); ++i)
    if (!base[i]) free.push_back(i);
  const size_t n = free.size();
  std::vector<Placement> p(base.size());
  auto fill = [&](size_t k, size_t m) {
    for (size_t i = 0; i < base.size(); ++i) p[i] = base[i].value_or(Placement::CPU);
    for (size_t f = 0; f < n; ++f)
      p[free[f]] = f < k ? Placement::RESIDENT : (f >= n - m ? Placement::CPU : Placement::STREAMED);
  };
  fill(0, n);  // the free layers on the CPU: fits whenever the forced layers do (make_plan checked)
  std::vector<Placement> best = p;
  double best_s =
      predict_run(stack, best, device, request.prompt_tokens, request.generated_tokens, request.options.prefetch_depth)
          .total_s;
  for (size_t k = 0; k <= n; ++k)
    for (size_t m = 0; k + m <= n; ++m) {
      fill(k, m);
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

std::string overrides_text(const PlanRequest& request) {
  std::string s;
  for (const PlacementOverride& o : request.overrides)
    s += (s.empty() ? "" : " ") + o.flag + " " + quote_name(o.pattern);
  return s;
}

bool fits(const StackProfile& stack, const DeviceProfile& device, const PlanRequest& request,
          const std::vector<Placement>& placements) {
  return compute_memory_plan(input_for(stack, device, request, placements), request.vram_budget).required_budget <=
         request.vram_budget;
}

// BUDGET: `placements` (what `what` describes) needs more device memory than the budget, with the numbers.
[[noreturn]] void refuse_over_budget(const StackProfile& stack, const DeviceProfile& device, const PlanRequest& request,
                                     const std::vector<Placement>& placements, const std::string& what) {
  const MemoryPlan memory = compute_memory_plan(input_for(stack, device, request, placements), request.vram_budget);
  const std::string over = std::to_string(memory.required_budget - request.vram_budget);
  fail(ErrorCategory::BUDGET, what + " needs " + format_size(memory.required_budget) +
                                  " of device memory, but the budget is " + format_size(request.vram_budget) + " (" +
                                  over + " bytes over):\n" + memory.breakdown());
}

// The placements of a policy with some layers forced (resolve_overrides): the policy's rule over the free layers.
std::vector<Placement> constrained_placement(const StackProfile& stack, const DeviceProfile& device,
                                             const PlanRequest& request,
                                             const std::vector<std::optional<Placement>>& forced, bool gpu,
                                             Plan& plan) {
  const std::string flags = overrides_text(request);
  for (size_t i = 0; i < forced.size(); ++i)
    if (forced[i] && *forced[i] != Placement::CPU && !gpu_usable(device, request))
      fail(ErrorCategory::UNSUPPORTED, flags + " cannot be honoured: layer '" + stack.layers[i].name + "' is forced " +
                                           std::string(placement_name(*forced[i])) + ", but " + no_gpu_reason(device) +
                                           ": only cpu placements can run");
  std::vector<size_t> free;
  for (size_t i = 0; i < forced.size(); ++i)
    if (!forced[i]) free.push_back(i);
  auto with = [&](Placement rest, size_t k) {  // the first k free layers resident, the other free ones at `rest`
    std::vector<Placement> p(forced.size());
    for (size_t i = 0; i < forced.size(); ++i) p[i] = forced[i].value_or(rest);
    for (size_t f = 0; f < k && f < free.size(); ++f) p[free[f]] = Placement::RESIDENT;
    return p;
  };
  // The smallest plan the overrides allow (every free layer on the CPU): if even that does not fit, no policy can.
  const std::vector<Placement> smallest = with(Placement::CPU, 0);
  if (!fits(stack, device, request, smallest))
    refuse_over_budget(stack, device, request, smallest,
                       flags + " cannot be honoured: with every other layer on the CPU the plan");
  if (!gpu) {
    plan.policy = Policy::CPU_ALL;
    return smallest;
  }
  Policy policy = request.policy;
  if (policy == Policy::AUTO && !device.has_rates()) {
    plan.note = "auto: the device profile has no measured rates (run `ferry calibrate`); planned as resident-stream";
    plan.policy = policy = Policy::RESIDENT_STREAM;
  }
  std::vector<Placement> p;
  switch (policy) {
    case Policy::AUTO:
      return fastest_placement(stack, device, request, forced);
    case Policy::CPU_ALL:
      return smallest;
    case Policy::STREAM_ALL:
      p = with(Placement::STREAMED, 0);
      break;
    case Policy::RESIDENT_FIRST:
    case Policy::RESIDENT_STREAM: {
      // The longest prefix of the free layers that fits, tried from the longest down (staging slots are sized by the
      // largest streamed layer, so a longer prefix can need less: growing it would stop too early).
      const Placement rest = policy == Policy::RESIDENT_FIRST ? Placement::CPU : Placement::STREAMED;
      for (size_t k = free.size() + 1; k-- > 0;) {
        p = with(rest, k);
        if (fits(stack, device, request, p)) break;
      }
      break;
    }
  }
  if (!fits(stack, device, request, p))
    refuse_over_budget(stack, device, request, p,
                       flags + " with the other layers placed by " + std::string(policy_name(policy)) + ": the plan");
  return p;
}

// Every placement from a plan file, checked against the stack, the device and the budget.
std::vector<Placement> file_placement(const StackProfile& stack, const DeviceProfile& device,
                                      const PlanRequest& request) {
  const PlanFile& file = *request.plan_file;
  const std::vector<Placement> p = plan_file_placements(file, stack);
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != Placement::CPU && !gpu_usable(device, request))
      fail(ErrorCategory::UNSUPPORTED, "plan file " + file.path + ": layers[" + std::to_string(i) + "].placement is " +
                                           std::string(placement_name(p[i])) + " ('" + stack.layers[i].name +
                                           "'), but " + no_gpu_reason(device) + ": only cpu placements can run");
  if (!fits(stack, device, request, p)) refuse_over_budget(stack, device, request, p, "plan file " + file.path);
  return p;
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
  const bool gpu = request.policy != Policy::CPU_ALL && gpu_usable(device, request);
  const std::vector<std::optional<Placement>> forced = resolve_overrides(request.overrides, stack);
  const bool any_forced = std::any_of(forced.begin(), forced.end(), [](const auto& f) { return f.has_value(); });
  if (request.plan_file) {
    plan.placements = file_placement(stack, device, request);
    plan.note = "placements from the plan file " + request.plan_file->path;
  } else if (any_forced) {
    plan.placements = constrained_placement(stack, device, request, forced, gpu, plan);
  } else if (!gpu) {
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
          plan.placements = fastest_placement(stack, device, request, forced);
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
