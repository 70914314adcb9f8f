#include "ferry/offload/demand.hpp"

#include <algorithm>

#include "ferry/error.hpp"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {
namespace {

bool any_gpu(std::span<const Placement> placements) {
  return std::any_of(placements.begin(), placements.end(), [](Placement p) { return p != Placement::CPU; });
}

void check_sizes(std::span<const LayerDemand> layers, std::span<const Placement> placements) {
  if (layers.empty() || layers.size() != placements.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "memory demand: " + std::to_string(layers.size()) + " layers and " +
                                              std::to_string(placements.size()) + " placements");
}

}  // namespace

LayerDemand layer_demand(const Layer& layer, int64_t max_tokens) {
  LayerDemand d;
  d.name = layer.name();
  d.width = layer.width();
  d.weight_bytes = layer_layout(layer.weights()).bytes;
  d.kv_cache_bytes = layer.kv_cache_bytes();
  d.workspace_floats_cpu = layer.workspace_floats(max_tokens, Device::CPU);
  d.workspace_floats_gpu = layer.workspace_floats(max_tokens, Device::GPU);
  d.output_floats = layer.output_floats(max_tokens);
  const std::vector<size_t> vectors = layer.vector_matmul_weights();
  const std::vector<size_t> matmuls = layer.matmul_weights();
  const std::vector<int64_t> tokens = layer.matmul_tokens(max_tokens);
  if (tokens.size() != matmuls.size())
    fail(ErrorCategory::INTERNAL, "layer '" + layer.name() + "': " + std::to_string(tokens.size()) +
                                      " matmul token counts for " + std::to_string(matmuls.size()) + " matrices");
  for (size_t k = 0; k < matmuls.size(); ++k) {
    QuantMatrixView v = layer.weights()[matmuls[k]].view;
    v.data = nullptr;
    if (std::find(vectors.begin(), vectors.end(), matmuls[k]) != vectors.end()) {
      d.vector_matmuls.push_back(v);
    } else {
      d.matmuls.push_back(v);
      d.matmul_tokens.push_back(tokens[k]);
    }
  }
  return d;
}

std::vector<LayerDemand> layer_demands(std::span<const Layer* const> layers, int64_t max_tokens) {
  std::vector<LayerDemand> out;
  out.reserve(layers.size());
  for (const Layer* l : layers) out.push_back(layer_demand(*l, max_tokens));
  return out;
}

GpuSizing gpu_sizing(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                     const StackOptions& options) {
  check_sizes(layers, placements);
  GpuSizing s;
  const auto t = static_cast<size_t>(options.max_tokens);
  s.residual_floats = t * static_cast<size_t>(layers[0].width);
  if (placements.back() != Placement::CPU) s.output_floats = layers.back().output_floats;
  s.step_input_floats = options.step_input_floats;
  const size_t cap_elems = options.fp16_scratch_limit / 2;
  const size_t activation_cap_elems = options.fp16_activation_limit / 2;
  // GEMV needs no scratch, dequant_gemm a weight tile and an FP16 copy of the input (or of a chunk of its tokens).
  auto gemm_scratch = [&](const QuantMatrixView& w, size_t tokens) {
    const size_t elems = static_cast<size_t>(w.n_rows) * static_cast<size_t>(w.n_cols);
    const size_t tile = std::min(elems, std::max(device_sizing::gemm_min_weight_scratch(w), cap_elems));
    s.weight_tile_elems = std::max(s.weight_tile_elems, tile);
    s.activation_fp16_elems =
        std::max(s.activation_fp16_elems,
                 device_sizing::gemm_activation_scratch_capped(w, static_cast<int64_t>(tokens), activation_cap_elems));
  };
  for (size_t i = 0; i < layers.size(); ++i) {
    if (placements[i] == Placement::CPU) continue;
    // (the FP32 temporary of dequant_via_fp32 is sized after the loop, from the largest tile)
    s.workspace_floats = std::max(s.workspace_floats, layers[i].workspace_floats_gpu);
    // Steps run 1..max_tokens tokens, so a matrix needs GEMM scratch if either end takes the GEMM.
    for (const QuantMatrixView& w : layers[i].matmuls)
      if (!device_sizing::matmul_uses_gemv(w, 1) || !device_sizing::matmul_uses_gemv(w, options.max_tokens))
        gemm_scratch(w, t);
    // One vector whatever the step: the GEMV, unless the kernel cannot read the matrix (then a one-row GEMM).
    for (const QuantMatrixView& w : layers[i].vector_matmuls)
      if (!device_sizing::matmul_uses_gemv(w, 1)) gemm_scratch(w, 1);
  }
  if (options.dequant_via_fp32) s.fp32_tile_floats = s.weight_tile_elems;
  return s;
}

MemoryPlanInput memory_plan_input(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                                  const StackOptions& options, uint64_t context_bytes) {
  check_sizes(layers, placements);
  MemoryPlanInput input;
  input.staging_slots = options.prefetch_depth + 1;
  input.margin = options.margin;
  for (size_t i = 0; i < layers.size(); ++i)
    input.layers.push_back({layers[i].weight_bytes, layers[i].kv_cache_bytes, placements[i]});
  if (!any_gpu(placements)) return input;
  const GpuSizing sizing = gpu_sizing(layers, placements, options);
  input.context_bytes = context_bytes;
  input.fp16_scratch_bytes = align_up(sizing.weight_tile_elems * 2) + align_up(sizing.activation_fp16_elems * 2) +
                             align_up(sizing.fp32_tile_floats * 4);
  input.activation_bytes = align_up(sizing.residual_floats * 4) + align_up(sizing.workspace_floats * 4) +
                           align_up(sizing.output_floats * 4) + align_up(sizing.step_input_floats * 4) +
                           align_up(sizing.position_bytes);
  input.cublas_workspace_bytes = options.cublas_workspace_bytes;
  return input;
}

std::string HostMemoryNeed::describe() const {
  return "KV cache " + format_size(kv_cache) + ", streamed-weight pool " + format_size(streamed_pool) + ", buffers " +
         format_size(buffers);
}

HostMemoryNeed host_memory_need(std::span<const LayerDemand> layers, std::span<const Placement> placements,
                                const StackOptions& options) {
  check_sizes(layers, placements);
  constexpr uint64_t kPage = 4096;
  HostMemoryNeed need;
  size_t workspace_floats = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (placements[i] == Placement::CPU || placements[i] == Placement::PHASED) {
      need.kv_cache += layers[i].kv_cache_bytes;
      workspace_floats = std::max(workspace_floats, layers[i].workspace_floats_cpu);
    }
    if (placements[i] == Placement::STREAMED || placements[i] == Placement::PHASED)
      need.streamed_pool += align_up(layers[i].weight_bytes, kPage);
  }
  const uint64_t output = layers.back().output_floats * sizeof(float);
  need.buffers = workspace_floats * sizeof(float) + output;
  if (any_gpu(placements))  // pinned step input/output, the pinned copy of a GPU layer's output, of the step inputs
    need.buffers += static_cast<uint64_t>(options.max_tokens) * layers[0].width * sizeof(float) + output +
                    options.step_input_floats * sizeof(float);
  return need;
}

}  // namespace ferry
