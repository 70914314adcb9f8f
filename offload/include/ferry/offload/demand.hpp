// What a stack asks of the machine for a placement, as plain arithmetic: each layer's needs at the step size (its
// LayerDemand, read from the layer itself or from a model file's header), and from those the device memory plan and
// the host memory. The scheduler reserves exactly this; planners (policies/) judge placements with the same functions
// on any machine, without a GPU: what they predict is what the scheduler will take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ferry/offload/layer.hpp"
#include "ferry/offload/memory_plan.hpp"
#include "ferry/offload/placement.hpp"

namespace ferry {

// What one layer needs for steps of up to max_tokens tokens.
struct LayerDemand {
  std::string name;
  int64_t width = 0;
  uint64_t weight_bytes = 0;  // layer_layout(weights).bytes: its tensors back to back, aligned
  uint64_t kv_cache_bytes = 0;
  size_t workspace_floats_cpu = 0;
  size_t workspace_floats_gpu = 0;
  size_t output_floats = 0;
  std::vector<QuantMatrixView> matmuls;         // type and shape of each matrix it multiplies through Ops (data unused)
  std::vector<QuantMatrixView> vector_matmuls;  // those of them it multiplies with one vector per step
  // Per entry of `matmuls`: the rows it multiplies in a step of max_tokens (Layer::matmul_tokens), for the cost model;
  // empty: every one multiplies all of them. GEMM scratch stays sized for max_tokens, the most any matrix sees.
  std::vector<int64_t> matmul_tokens;
};
LayerDemand layer_demand(const Layer& layer, int64_t max_tokens);
std::vector<LayerDemand> layer_demands(std::span<const Layer* const> layers, int64_t max_tokens);

// How the scheduler sizes what is not per layer.
struct StackOptions {
  int64_t max_tokens = 1;  // the largest T a step gets
  int prefetch_depth = 1;  // staging slots S = prefetch_depth + 1
  // PHASED layers run on the CPU in steps of at most this many tokens and are streamed to the GPU in larger ones. A
  // planner sets it where its cost model says streaming starts to beat the CPU; the default is the largest step the
  // CPU's GEMV reads the weights once for (kernels' GEMV path), where the CPU costs what one token costs.
  int64_t phased_cpu_max_tokens = 8;
  MarginPolicy margin;
  uint64_t fp16_scratch_limit = uint64_t{64} << 20;  // cap on the dequantized-weight tile (the kernel's minimum
                                                     // tile wins if larger)
  // Cap on the FP16 copy of a GEMM's input: above it x goes in balanced token chunks (the kernel's minimum chunk wins
  // if larger). LLM prompts stay under it (512 tokens x 13824 = 14 MB); Flux's 4608-token linear2 input (141 MB) is
  // cut in three.
  uint64_t fp16_activation_limit = uint64_t{64} << 20;
  // Benchmark only: dequantize each GEMM weight tile through an FP32 temporary, then cast to FP16 (the path ferry
  // exists to avoid), with the temporary (4 B per tile element) counted in FP16_SCRATCH.
  bool dequant_via_fp32 = false;
  uint64_t cublas_workspace_bytes = uint64_t{32} << 20;  // cuBLAS's recommendation for Hopper
  size_t step_input_floats = 0;  // the most StepContext::inputs a step carries (0: the stack takes none)
};

// Device-side sizes of a placement, besides weights and KV cache.
struct GpuSizing {
  size_t weight_tile_elems = 0;      // FP16 weight scratch: the largest GEMM tile of a GPU layer
  size_t activation_fp16_elems = 0;  // FP16 copy of a GEMM's input
  size_t fp32_tile_floats = 0;       // StackOptions::dequant_via_fp32: the FP32 temporary of a weight tile
  size_t residual_floats = 0;        // x [max_tokens, width]
  size_t workspace_floats = 0;       // the largest GPU layer's workspace at max_tokens
  size_t output_floats = 0;          // the last layer's output, when that layer runs on the GPU
  size_t step_input_floats = 0;      // the device copy of StepContext::inputs
  // The step's position on the device, read by replayed decode steps (CUDA graphs): one int32, its own aligned piece.
  size_t position_bytes = sizeof(int32_t);
};
GpuSizing gpu_sizing(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                     const StackOptions& options);

// The device memory plan input of a placement; `context_bytes` is the CUDA context overhead of the device (measured
// by device_memory_baseline, or a device profile's).
MemoryPlanInput memory_plan_input(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                                  const StackOptions& options, uint64_t context_bytes);

// Host memory the scheduler reserves at construction for a placement, by use.
struct HostMemoryNeed {
  uint64_t kv_cache = 0;       // KV caches of the CPU layers
  uint64_t streamed_pool = 0;  // the STREAMED layers' weights, copied into the (pinned) pool
  uint64_t buffers = 0;        // CPU workspace, activation and output buffers
  uint64_t total() const noexcept { return kv_cache + streamed_pool + buffers; }
  std::string describe() const;  // "KV cache 1.00 GiB, streamed-weight pool 3.00 GiB, buffers 12.00 MiB"
};
HostMemoryNeed host_memory_need(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                                const StackOptions& options);

}  // namespace ferry
