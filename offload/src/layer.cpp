#include "ferry/offload/layer.hpp"

#include <algorithm>

#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/offload/memory_plan.hpp"

namespace ferry {

uint64_t tensor_bytes(const QuantMatrixView& view) {
  if (view.n_rows < 0 || view.n_cols <= 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "tensor of " + std::to_string(view.n_rows) + " x " +
                                              std::to_string(view.n_cols) + " elements has a negative or empty shape");
  const auto bytes = checked_mul(row_bytes(view.type, view.n_cols), static_cast<uint64_t>(view.n_rows));
  if (!bytes) fail(ErrorCategory::INVALID_ARGUMENT, "tensor size overflows 64 bits");
  return *bytes;
}

void Layer::kv_cache_traffic(const StepContext& /*step*/, std::vector<KvRange>& reads,
                             std::vector<KvRange>& writes) const {
  const uint64_t bytes = kv_cache_bytes();
  if (bytes == 0) return;
  reads.push_back({0, bytes});
  writes.push_back({0, bytes});
}

LayerLayout layer_layout(std::span<const WeightTensor> tensors) {
  LayerLayout layout;
  layout.offsets.reserve(tensors.size());
  uint64_t offset = 0;
  for (const WeightTensor& t : tensors) {
    uint64_t bytes = 0;
    try {
      bytes = tensor_bytes(t.view);
    } catch (const Error& e) {
      fail(e.category(), "tensor '" + t.name + "': " + e.what());
    }
    layout.offsets.push_back(offset);
    const auto end = checked_add(offset, bytes);
    if (!end) fail(ErrorCategory::INVALID_ARGUMENT, "tensor '" + t.name + "': layer size overflows 64 bits");
    offset = align_up(*end);
  }
  layout.bytes = offset;
  return layout;
}

std::vector<QuantMatrixView> views_in_block(std::span<const WeightTensor> tensors, const LayerLayout& layout,
                                            const void* block) {
  std::vector<QuantMatrixView> views;
  views.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    QuantMatrixView v = tensors[i].view;
    v.data = static_cast<const std::byte*>(block) + layout.offsets[i];
    views.push_back(v);
  }
  return views;
}

std::vector<size_t> Layer::matmul_weights() const {
  std::vector<size_t> out;
  const std::span<const WeightTensor> w = weights();
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i].view.n_rows > 1) out.push_back(i);
  return out;
}

std::vector<int64_t> Layer::matmul_tokens(int64_t n_tokens) const {
  const std::vector<size_t> vectors = vector_matmul_weights();
  std::vector<int64_t> out;
  for (size_t i : matmul_weights())
    out.push_back(std::find(vectors.begin(), vectors.end(), i) != vectors.end() ? 1 : n_tokens);
  return out;
}

void check_layer_call(const Layer& layer, std::span<const QuantMatrixView> weights, const StepContext& step,
                      const LayerRun& run) {
  const size_t needed = run.ops ? layer.workspace_floats(step.n_tokens, run.ops->device()) : 0;
  if (run.ops == nullptr || weights.size() != layer.weights().size() || run.workspace_floats < needed ||
      (needed > 0 && run.workspace == nullptr))
    fail(ErrorCategory::INTERNAL, "layer '" + layer.name() + "': forward given " + std::to_string(weights.size()) +
                                      " weights and " + std::to_string(run.workspace_floats) +
                                      " workspace floats, needs " + std::to_string(layer.weights().size()) + " and " +
                                      std::to_string(needed) + (run.ops ? "" : " (and no ops)"));
}

}  // namespace ferry
