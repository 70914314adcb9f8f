#include "ferry/models/llama/layers.hpp"

#include <string>

#include "ferry/error.hpp"
#include "ferry/models/llama/block.hpp"

namespace ferry {
namespace {

QuantMatrixView vector_view(const float* data, int64_t n) { return QuantMatrixView{GgmlType::F32, data, n, 1}; }

}  // namespace

LlamaBlockLayer::LlamaBlockLayer(const LlamaConfig& config, const LlamaLayerWeights& w, int64_t index, int64_t n_ctx)
    : m_config(config), m_name("blk." + std::to_string(index)), m_n_ctx(n_ctx) {
  using R = LlamaTensorRole;
  m_tensors = {
      {llama_tensor_name(R::ATTN_NORM, index), vector_view(w.attn_norm, config.n_embd)},
      {llama_tensor_name(R::ATTN_Q, index), w.wq},
      {llama_tensor_name(R::ATTN_K, index), w.wk},
      {llama_tensor_name(R::ATTN_V, index), w.wv},
      {llama_tensor_name(R::ATTN_OUTPUT, index), w.wo},
      {llama_tensor_name(R::FFN_NORM, index), vector_view(w.ffn_norm, config.n_embd)},
      {llama_tensor_name(R::FFN_GATE, index), w.w_gate},
      {llama_tensor_name(R::FFN_UP, index), w.w_up},
      {llama_tensor_name(R::FFN_DOWN, index), w.w_down},
  };
}

LlamaLayerWeights LlamaBlockLayer::rebind(std::span<const QuantMatrixView> v) const {
  return LlamaLayerWeights{static_cast<const float*>(v[ATTN_NORM].data), v[WQ],     v[WK],   v[WV],    v[WO],
                           static_cast<const float*>(v[FFN_NORM].data),  v[W_GATE], v[W_UP], v[W_DOWN]};
}

size_t LlamaBlockLayer::workspace_floats(int64_t n_tokens, Device device) const {
  return LlamaBlockBuffers::workspace_floats(m_config, n_tokens, m_n_ctx, device);
}

uint64_t LlamaBlockLayer::kv_cache_bytes() const {
  return 2 * static_cast<uint64_t>(m_n_ctx) * static_cast<uint64_t>(m_config.n_embd_kv()) * sizeof(uint16_t);
}

void LlamaBlockLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                              const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  auto* kv = static_cast<uint16_t*>(run.kv_cache);
  const LlamaKvView view{kv, kv + m_n_ctx * m_config.n_embd_kv(), m_n_ctx};
  const LlamaBlockBuffers buffers =
      LlamaBlockBuffers::carve(m_config, step.n_tokens, m_n_ctx, run.ops->device(), run.workspace);
  llama_block_forward(*run.ops, m_config, rebind(weights), view, buffers, x, step.n_tokens, step.pos0);
}

LlamaHeadLayer::LlamaHeadLayer(const LlamaConfig& config, const LlamaWeights& w, bool all_logits_capacity)
    : m_config(config), m_all_logits_capacity(all_logits_capacity) {
  using R = LlamaTensorRole;
  m_tensors = {
      {llama_tensor_name(R::OUTPUT_NORM), vector_view(w.output_norm, config.n_embd)},
      {w.tied_output ? llama_tensor_name(R::TOKEN_EMBD) + " (tied output)" : llama_tensor_name(R::OUTPUT), w.output}};
}

size_t LlamaHeadLayer::workspace_floats(int64_t n_tokens, Device /*device*/) const {
  return static_cast<size_t>(n_tokens * m_config.n_embd);
}

void LlamaHeadLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                             const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  if (step.all_logits && !m_all_logits_capacity)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "layer '" + m_name + "': logits for every token were asked for, but the output holds one row per step");
  // Only the last token's logits are needed to sample; prefill skips the others unless asked.
  const int64_t rows = step.all_logits ? step.n_tokens : 1;
  llama_head_forward(*run.ops, m_config, static_cast<const float*>(weights[OUTPUT_NORM].data), weights[OUTPUT], x,
                     step.n_tokens, rows, run.workspace, run.output);
}

}  // namespace ferry
