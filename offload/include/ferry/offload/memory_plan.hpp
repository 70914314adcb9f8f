// The device memory budget as arithmetic (design.md §3), pure C++ so it is testable without a GPU:
//
//   budget >= context overhead (measured: free memory before vs after creating the context, cuBLAS handle, streams)
//           + resident weights (quantized, each layer's tensors back to back, 256-byte aligned)
//           + S staging slots x the largest streamed (or phased) layer S = prefetch depth + 1, 2..5
//           + FP16 scratch (a tile of dequantized weight + the FP16 copy of the GEMM's activations)
//           + activations (the residual stream and the largest layer workspace at the largest step)
//           + KV cache of the layers that run on the GPU (+ one buffer the size of the largest phased layer's, which
//             its GPU steps borrow: phased layers keep their cache in host memory)
//           + cuBLAS workspace
//           + margin = max(fraction x budget, floor)                   default 128 MiB (see MarginPolicy)
//
// The margin is relative to the budget, so the smallest budget B that holds a fixed sum R of the other terms is
// max(R + floor, ceil(R / (1 - fraction))). Everything but the context and the margin is the arena: one reservation,
// sub-allocated per category. The minimum budget of a stack is the smallest budget over every RESIDENT/STREAMED split
// of its GPU layers (CPU layers stay on the CPU): for real stacks, everything streamed; but with no more GPU layers
// than staging slots, or one layer much larger than the rest, keeping some resident costs less than S slots of them.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "ferry/offload/placement.hpp"

namespace ferry {

inline constexpr uint64_t kArenaAlignment = 256;

inline constexpr uint64_t align_up(uint64_t bytes, uint64_t alignment = kArenaAlignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

enum class MemoryCategory : uint8_t {
  CONTEXT,           // CUDA context, cuBLAS handle, streams: measured, not in the arena
  RESIDENT_WEIGHTS,  // quantized bytes of RESIDENT layers
  STAGING,           // S slots, each the size of the largest STREAMED layer
  FP16_SCRATCH,      // dequantized weight tile + FP16 activations for cublasGemmEx
  ACTIVATIONS,       // residual stream [T, width] + layer workspace, float32
  KV_CACHE,          // KV cache of GPU layers
  CUBLAS_WORKSPACE,  // handed to cuBLAS with cublasSetWorkspace
  MARGIN,            // headroom for what the driver allocates on its own: not in the arena
};
inline constexpr size_t kMemoryCategoryCount = 8;
using CategoryBytes = std::array<uint64_t, kMemoryCategoryCount>;

std::string_view memory_category_name(MemoryCategory category) noexcept;
// True for the categories the arena reserves (all but CONTEXT and MARGIN).
bool in_arena(MemoryCategory category) noexcept;

// What the driver allocates after the context was measured, outside the arena: the cuBLASLt handle (made at the first
// GEMM), kernels loaded lazily at their first launch, local memory for kernels that spill. Measured on the H200 as
// process device memory (NVML) minus context minus arena high water, in bench_flux (Flux-1-dev, every kernel kind,
// 4608-token steps): 61 MiB at 8 GiB, 70 MiB at 4 GiB; it does not grow with the budget, so the default keeps no
// proportional part and twice the largest figure seen, rounded up. test_offload_gpu checks the process against the
// budget on the GPU; a fraction stays available for cards whose driver behaves otherwise.
struct MarginPolicy {
  double fraction = 0.0;  // of the budget
  uint64_t floor_bytes = uint64_t{128} << 20;
};

// One layer as the plan sees it.
struct LayerFootprint {
  uint64_t weight_bytes = 0;    // its tensors back to back, each aligned to kArenaAlignment (see layer_layout)
  uint64_t kv_cache_bytes = 0;  // device KV cache when it runs on the GPU
  Placement placement = Placement::STREAMED;
};

inline constexpr int kMinStagingSlots = 2;
inline constexpr int kMaxStagingSlots = 5;  // prefetch depth 1..4

struct MemoryPlanInput {
  uint64_t context_bytes = 0;
  std::vector<LayerFootprint> layers;
  int staging_slots = 2;
  uint64_t fp16_scratch_bytes = 0;  // already aligned pieces, summed
  uint64_t activation_bytes = 0;    // already aligned pieces, summed
  uint64_t cublas_workspace_bytes = 0;
  MarginPolicy margin;
};

struct MemoryPlan {
  CategoryBytes bytes{};  // per category; MARGIN is the margin at `budget`
  uint64_t budget = 0;
  uint64_t required_budget = 0;  // the smallest budget at which this exact placement fits
  uint64_t minimum_budget = 0;   // the smallest budget over every RESIDENT/STREAMED split of the GPU layers
  bool uses_device = false;      // false when every layer is on the CPU: then nothing is reserved at all

  uint64_t operator[](MemoryCategory c) const noexcept { return bytes[static_cast<size_t>(c)]; }
  uint64_t arena_bytes() const noexcept;  // sum of the arena categories
  uint64_t total() const noexcept;        // sum of all categories, margin included
  // A table: category, bytes, share of the budget; then the budget, the required and the minimum budget.
  std::string breakdown() const;
};

// The plan for `input` at `budget` without judging it (bytes[MARGIN] is the margin at that budget).
MemoryPlan compute_memory_plan(const MemoryPlanInput& input, uint64_t budget);
// compute_memory_plan, then BUDGET if it does not fit: the message holds the breakdown, the budget this placement
// needs and the minimum budget of the stack (or, if even that is above `budget`, says that nothing fits).
// INVALID_ARGUMENT for staging_slots outside 2..5 or a margin fraction outside [0, 0.5].
MemoryPlan plan_memory(const MemoryPlanInput& input, uint64_t budget);

// The smallest B with `fixed` + max(fraction * B, floor) <= B.
uint64_t smallest_budget_for(uint64_t fixed, const MarginPolicy& margin);
// The margin the policy keeps at `budget`.
uint64_t margin_at(uint64_t budget, const MarginPolicy& margin);

// The simplest placement that fits: the longest prefix of the GPU layers RESIDENT with which the plan fits `budget`,
// the rest STREAMED (layers given as CPU stay CPU). For tests and benchmarks that need "budgets from the minimum to
// ample"; the planners in policies/ make the real decisions. BUDGET if the all-streamed plan does not fit.
std::vector<Placement> resident_first_placement(const MemoryPlanInput& input, uint64_t budget);

}  // namespace ferry
