#include "ferry/offload/memory_plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {
namespace {

uint64_t add_or_fail(uint64_t a, uint64_t b) {
  const auto sum = checked_add(a, b);
  if (!sum) fail(ErrorCategory::INVALID_ARGUMENT, "memory plan: the sizes overflow 64 bits");
  return *sum;
}

uint64_t mul_or_fail(uint64_t a, uint64_t b) {
  const auto product = checked_mul(a, b);
  if (!product) fail(ErrorCategory::INVALID_ARGUMENT, "memory plan: the sizes overflow 64 bits");
  return *product;
}

bool fits(uint64_t fixed, uint64_t budget, const MarginPolicy& margin) {
  const uint64_t m = margin_at(budget, margin);
  return fixed <= budget && m <= budget - fixed;
}

void check_input(const MemoryPlanInput& input) {
  if (input.staging_slots < kMinStagingSlots || input.staging_slots > kMaxStagingSlots)
    fail(ErrorCategory::INVALID_ARGUMENT, "memory plan: " + std::to_string(input.staging_slots) +
                                              " staging slots requested; expected " + std::to_string(kMinStagingSlots) +
                                              ".." + std::to_string(kMaxStagingSlots) + " (prefetch depth 1..4)");
  if (!(input.margin.fraction >= 0.0 && input.margin.fraction <= 0.5))
    fail(ErrorCategory::INVALID_ARGUMENT,
         "memory plan: margin fraction " + std::to_string(input.margin.fraction) + " is outside [0, 0.5]");
}

// The categories that do not depend on the budget, for the placement in `input`.
CategoryBytes fixed_categories(const MemoryPlanInput& input) {
  CategoryBytes b{};
  auto at = [&b](MemoryCategory c) -> uint64_t& { return b[static_cast<size_t>(c)]; };
  uint64_t largest_streamed = 0;
  uint64_t largest_phased_kv = 0;  // PHASED layers keep their KV cache on the host; a GPU step borrows one buffer
  bool any_gpu = false;
  for (const LayerFootprint& layer : input.layers) {
    if (layer.placement == Placement::CPU) continue;
    any_gpu = true;
    if (layer.placement == Placement::RESIDENT)
      at(MemoryCategory::RESIDENT_WEIGHTS) =
          add_or_fail(at(MemoryCategory::RESIDENT_WEIGHTS), align_up(layer.weight_bytes));
    else
      largest_streamed = std::max(largest_streamed, align_up(layer.weight_bytes));
    if (layer.placement == Placement::PHASED)
      largest_phased_kv = std::max(largest_phased_kv, align_up(layer.kv_cache_bytes));
    else
      at(MemoryCategory::KV_CACHE) = add_or_fail(at(MemoryCategory::KV_CACHE), align_up(layer.kv_cache_bytes));
  }
  at(MemoryCategory::KV_CACHE) = add_or_fail(at(MemoryCategory::KV_CACHE), largest_phased_kv);
  if (!any_gpu) return b;  // nothing runs on the device: no context, no arena
  at(MemoryCategory::CONTEXT) = input.context_bytes;
  at(MemoryCategory::STAGING) = mul_or_fail(static_cast<uint64_t>(input.staging_slots), largest_streamed);
  at(MemoryCategory::FP16_SCRATCH) = align_up(input.fp16_scratch_bytes);
  at(MemoryCategory::ACTIVATIONS) = align_up(input.activation_bytes);
  at(MemoryCategory::CUBLAS_WORKSPACE) = align_up(input.cublas_workspace_bytes);
  return b;
}

// The smallest resident + staging over every RESIDENT/STREAMED split of the GPU layers: with sizes sorted
// w1 >= w2 >= ..., keeping the j largest resident costs w1 + ... + wj + S * w(j+1). Usually j = 0 (everything
// streamed); when a stack has no more GPU layers than slots, or one layer dwarfs the rest, keeping some resident is
// smaller.
uint64_t smallest_weight_bytes(const MemoryPlanInput& input) {
  std::vector<uint64_t> sizes;
  for (const LayerFootprint& layer : input.layers)
    if (layer.placement != Placement::CPU) sizes.push_back(align_up(layer.weight_bytes));
  std::sort(sizes.begin(), sizes.end(), std::greater<>());
  uint64_t best = UINT64_MAX, resident = 0;
  for (size_t j = 0; j <= sizes.size(); ++j) {
    const uint64_t staging = j < sizes.size() ? mul_or_fail(static_cast<uint64_t>(input.staging_slots), sizes[j]) : 0;
    best = std::min(best, add_or_fail(resident, staging));
    if (j < sizes.size()) resident = add_or_fail(resident, sizes[j]);
  }
  return best;
}

uint64_t sum(const CategoryBytes& b) {
  uint64_t s = 0;
  for (uint64_t v : b) s = add_or_fail(s, v);
  return s;
}

}  // namespace

std::string_view memory_category_name(MemoryCategory category) noexcept {
  switch (category) {
    case MemoryCategory::CONTEXT:
      return "context";
    case MemoryCategory::RESIDENT_WEIGHTS:
      return "resident weights";
    case MemoryCategory::STAGING:
      return "staging slots";
    case MemoryCategory::FP16_SCRATCH:
      return "fp16 scratch";
    case MemoryCategory::ACTIVATIONS:
      return "activations";
    case MemoryCategory::KV_CACHE:
      return "kv cache";
    case MemoryCategory::CUBLAS_WORKSPACE:
      return "cublas workspace";
    case MemoryCategory::MARGIN:
      return "margin";
  }
  return "?";
}

bool in_arena(MemoryCategory category) noexcept {
  return category != MemoryCategory::CONTEXT && category != MemoryCategory::MARGIN;
}

uint64_t margin_at(uint64_t budget, const MarginPolicy& margin) {
  const long double share = std::ceil(static_cast<long double>(budget) * margin.fraction);
  const uint64_t proportional = share >= 18446744073709551615.0L ? UINT64_MAX : static_cast<uint64_t>(share);
  return std::max(proportional, margin.floor_bytes);
}

uint64_t smallest_budget_for(uint64_t fixed, const MarginPolicy& margin) {
  if (fixed == 0 && margin.floor_bytes == 0) return 0;
  // Closed form, then a few unit steps to absorb the rounding of ceil(fraction * B); fits() is monotone in B because
  // B - ceil(f * B) never decreases for f < 1.
  const long double by_fraction = std::ceil(static_cast<long double>(fixed) / (1.0L - margin.fraction));
  uint64_t b = std::max(add_or_fail(fixed, margin.floor_bytes), static_cast<uint64_t>(by_fraction));
  while (!fits(fixed, b, margin)) b = add_or_fail(b, 1);
  while (b > 0 && fits(fixed, b - 1, margin)) --b;
  return b;
}

uint64_t MemoryPlan::arena_bytes() const noexcept {
  uint64_t s = 0;
  for (size_t i = 0; i < kMemoryCategoryCount; ++i)
    if (in_arena(static_cast<MemoryCategory>(i))) s += bytes[i];
  return s;
}

uint64_t MemoryPlan::total() const noexcept {
  uint64_t s = 0;
  for (uint64_t v : bytes) s += v;
  return s;
}

std::string MemoryPlan::breakdown() const {
  std::string out;
  char line[160];
  auto row = [&](std::string_view name, uint64_t value) {
    const double share = budget > 0 ? 100.0 * static_cast<double>(value) / static_cast<double>(budget) : 0.0;
    std::snprintf(line, sizeof line, "  %-22.*s %14s %7.1f%%\n", static_cast<int>(name.size()), name.data(),
                  format_size(value).c_str(), share);
    out += line;
  };
  for (size_t i = 0; i < kMemoryCategoryCount; ++i) row(memory_category_name(static_cast<MemoryCategory>(i)), bytes[i]);
  row("total", total());
  row("budget", budget);
  row("this placement needs", required_budget);
  row("minimum for the stack", minimum_budget);
  return out;
}

MemoryPlan compute_memory_plan(const MemoryPlanInput& input, uint64_t budget) {
  check_input(input);
  MemoryPlan plan;
  plan.budget = budget;
  plan.bytes = fixed_categories(input);
  plan.uses_device = std::any_of(input.layers.begin(), input.layers.end(),
                                 [](const LayerFootprint& l) { return l.placement != Placement::CPU; });
  if (!plan.uses_device) return plan;
  plan.required_budget = smallest_budget_for(sum(plan.bytes), input.margin);
  const uint64_t weights = plan[MemoryCategory::RESIDENT_WEIGHTS] + plan[MemoryCategory::STAGING];
  plan.minimum_budget = smallest_budget_for(sum(plan.bytes) - weights + smallest_weight_bytes(input), input.margin);
  plan.bytes[static_cast<size_t>(MemoryCategory::MARGIN)] = margin_at(budget, input.margin);
  return plan;
}

MemoryPlan plan_memory(const MemoryPlanInput& input, uint64_t budget) {
  MemoryPlan plan = compute_memory_plan(input, budget);
  if (!plan.uses_device || budget >= plan.required_budget) return plan;
  std::string message;
  if (budget < plan.minimum_budget)
    message = "VRAM budget " + format_size(budget) + " (" + std::to_string(budget) +
              " bytes) is below the minimum for this stack: " + format_size(plan.minimum_budget) + " (" +
              std::to_string(plan.minimum_budget) + " bytes) with every GPU layer streamed through " +
              std::to_string(input.staging_slots) + " staging slots";
  else
    message = "VRAM budget " + format_size(budget) + " does not hold this placement, which needs " +
              format_size(plan.required_budget) + " (" + std::to_string(plan.required_budget) +
              " bytes); the minimum for this stack (GPU layers split at best between resident and streamed) is " +
              format_size(plan.minimum_budget) + " (" + std::to_string(plan.minimum_budget) + " bytes)";
  fail(ErrorCategory::BUDGET, message + "\n" + plan.breakdown());
}

std::vector<Placement> resident_first_placement(const MemoryPlanInput& input, uint64_t budget) {
  MemoryPlanInput trial = input;
  for (LayerFootprint& l : trial.layers)
    if (l.placement != Placement::CPU) l.placement = Placement::STREAMED;
  plan_memory(trial, budget);  // throws when even the all-streamed plan does not fit
  // The longest prefix that fits, tried from the longest down. Growing the prefix one layer at a time and stopping at
  // the first that does not fit would miss it: the staging slots are sized by the largest layer still streamed, so a
  // longer prefix can need less (all resident needs no slot at all) — equal-sized blocks whose whole stack fits would
  // otherwise stream from the point where weights plus slots first overflow.
  std::vector<size_t> gpu;
  for (size_t i = 0; i < trial.layers.size(); ++i)
    if (trial.layers[i].placement != Placement::CPU) gpu.push_back(i);
  for (size_t k = gpu.size(); k > 0; --k) {
    for (size_t g = 0; g < gpu.size(); ++g)
      trial.layers[gpu[g]].placement = g < k ? Placement::RESIDENT : Placement::STREAMED;
    if (compute_memory_plan(trial, budget).required_budget <= budget) break;
    if (k == 1) trial.layers[gpu[0]].placement = Placement::STREAMED;  // none resident: the all-streamed plan
  }
  std::vector<Placement> out;
  out.reserve(trial.layers.size());
  for (const LayerFootprint& l : trial.layers) out.push_back(l.placement);
  return out;
}

}  // namespace ferry
