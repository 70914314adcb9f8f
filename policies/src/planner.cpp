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

// The largest step size, 1..kCpuInt8MaxTokens, up to which the CPU runs `layers` faster than streaming them does (the
// longer of their copy and their GPU compute, with a phased step's K/V download, layer by layer: the copy of one
// hides behind the compute of another at best): the threshold of the phased layers. Computed from the profile, since
// it moves with the CPU's rates and the link's: a faster CPU keeps larger steps; 1 where the CPU loses already at one
// token (phased layers are then worth it only for what the CPU and the link do together in decode).
int64_t phased_threshold(const StackProfile& stack, const DeviceProfile& device, const std::vector<size_t>& layers) {
  if (layers.empty()) return 1;
  int64_t threshold = 1;
  for (int64_t t = 1; t <= kCpuInt8MaxTokens; ++t) {
    const StepCosts c = step_costs(stack, device, t);
    double cpu = 0.0, streamed = 0.0;
    for (size_t i : layers) {
      cpu += c.cpu_s[i];
      streamed += std::max(c.copy_s[i], c.gpu_s[i] + c.kv_copy_s[i]);
    }
    if (cpu >= streamed) break;
    threshold = t;
  }
  return threshold;
}

// The fastest predicted placement of the family "first k free layers resident, last m free layers on the CPU, p of
// the s = n - k - m between them phased, spread evenly (the CPU and the link alternate in decode), the others
// streamed" that fits; `base` holds the forced placements (every layer free without overrides). Every fixed policy's
// placement is in the family (resident-stream: m = p = 0; resident-first: m = n - k; stream-all: k = m = p = 0;
// cpu-all: m = n), so auto is never predicted slower than any of them. About n^3 / 6 candidates: the step costs are
// computed once (RunCosts) and each candidate is three play-outs of O(n); the memory plan, the dearer check, is made
// only for a candidate that would be the best so far (test_phased prints the time for an 80-block model).
std::vector<Placement> fastest_placement(const StackProfile& stack, const DeviceProfile& device,
                                         const PlanRequest& request, const std::vector<std::optional<Placement>>& base,
                                         int64_t threshold) {
  std::vector<size_t> free;
  for (size_t i = 0; i < base.size(); ++i)
    if (!base[i]) free.push_back(i);
  const size_t n = free.size();
  const RunCosts costs(stack, device, request.prompt_tokens, request.generated_tokens);
  const ScheduleShape shape{request.options.prefetch_depth, threshold};
  std::vector<Placement> p(base.size());
  auto fill = [&](size_t k, size_t m, size_t phased) {
    for (size_t i = 0; i < base.size(); ++i) p[i] = base[i].value_or(Placement::CPU);
    const size_t middle = n - k - m;
    for (size_t f = 0; f < n; ++f) {
      if (f < k) {
        p[free[f]] = Placement::RESIDENT;
      } else if (f >= n - m) {
        p[free[f]] = Placement::CPU;
      } else {
        // Bresenham: the j-th middle layer is phased when floor((j + 1) p / s) steps up there.
        const size_t j = f - k;
        p[free[f]] = (j + 1) * phased / middle > j * phased / middle ? Placement::PHASED : Placement::STREAMED;
      }
    }
  };
  auto fits_now = [&] {
    return compute_memory_plan(input_for(stack, device, request, p), request.vram_budget).required_budget <=
           request.vram_budget;
  };
  fill(0, n, 0);  // the free layers on the CPU: fits whenever the forced layers do (make_plan checked)
  std::vector<Placement> best = p;
  double best_s = costs.predict(best, shape).total_s;
  for (size_t k = 0; k <= n; ++k) {
    // The least memory k resident layers can take: the others on the CPU. If that does not fit, no m or p will.
    fill(k, n - k, 0);
    if (!fits_now()) break;  // nor will more resident layers
    for (size_t m = 0; k + m <= n; ++m)
      for (size_t phased = 0; phased <= (request.allow_phased ? n - k - m : 0); ++phased) {
        fill(k, m, phased);
        const double s = costs.predict(p, shape).total_s;
        if (s < best_s && fits_now()) {
          best_s = s;
          best = p;
        }
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
      plan.phased_cpu_max_tokens = phased_threshold(stack, device, free);
      return fastest_placement(stack, device, request, forced, plan.phased_cpu_max_tokens);
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
  if (request.options.phased_cpu_max_tokens < 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "plan: phased_cpu_max_tokens is " +
                                              std::to_string(request.options.phased_cpu_max_tokens) +
                                              ", expected 0 or more");
  Plan plan;
  plan.policy = request.policy;
  plan.phased_cpu_max_tokens = request.options.phased_cpu_max_tokens;
  const size_t n = stack.layers.size();
  const bool gpu = request.policy != Policy::CPU_ALL && gpu_usable(device, request);
  const std::vector<std::optional<Placement>> forced = resolve_overrides(request.overrides, stack);
  const bool any_forced = std::any_of(forced.begin(), forced.end(), [](const auto& f) { return f.has_value(); });
  if (request.plan_file) {
    plan.placements = file_placement(stack, device, request);
    if (request.plan_file->phased_cpu_max_tokens)
      plan.phased_cpu_max_tokens = *request.plan_file->phased_cpu_max_tokens;
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
          std::vector<size_t> all(n);
          for (size_t i = 0; i < n; ++i) all[i] = i;
          plan.phased_cpu_max_tokens = phased_threshold(stack, device, all);
          plan.placements = fastest_placement(stack, device, request, forced, plan.phased_cpu_max_tokens);
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
