#include "ferry/models/llama/layers.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/models/llama/block.hpp"

namespace ferry {
namespace {

QuantMatrixView vector_view(const float* data, int64_t n) { return QuantMatrixView{GgmlType::F32, data, n, 1}; }

}  // namespace

LlamaBlockLayer::LlamaBlockLayer(const LlamaConfig& config, const LlamaLayerWeights& w, int64_t index, int64_t n_ctx,
                                 int64_t n_seq)
    : m_config(config), m_name("blk." + std::to_string(index)), m_index(index), m_n_ctx(n_ctx), m_n_seq(n_seq) {
  if (n_seq < 1) fail(ErrorCategory::INVALID_ARGUMENT, m_name + ": " + std::to_string(n_seq) + " KV caches");
  using R = LlamaTensorRole;
  m_position.fill(-1);
  add_tensor(ATTN_NORM, R::ATTN_NORM, vector_view(w.attn_norm, config.n_embd));
  add_tensor(WQ, R::ATTN_Q, w.wq);
  add_tensor(WK, R::ATTN_K, w.wk);
  add_tensor(WV, R::ATTN_V, w.wv);
  add_tensor(WO, R::ATTN_OUTPUT, w.wo);
  add_tensor(FFN_NORM, R::FFN_NORM, vector_view(w.ffn_norm, config.n_embd));
  add_tensor(W_GATE, R::FFN_GATE, w.w_gate);
  add_tensor(W_UP, R::FFN_UP, w.w_up);
  add_tensor(W_DOWN, R::FFN_DOWN, w.w_down);
  const LlamaArchTraits traits = config.traits();
  if (traits.qkv_bias) {
    add_tensor(BQ, R::ATTN_Q_BIAS, vector_view(w.bq, config.n_embd_q()));
    add_tensor(BK, R::ATTN_K_BIAS, vector_view(w.bk, config.n_embd_kv()));
    add_tensor(BV, R::ATTN_V_BIAS, vector_view(w.bv, config.n_embd_kv()));
  }
  if (traits.qk_norm) {
    add_tensor(Q_NORM, R::ATTN_Q_NORM, vector_view(w.q_norm, config.head_dim()));
    add_tensor(K_NORM, R::ATTN_K_NORM, vector_view(w.k_norm, config.head_dim()));
  }
}

void LlamaBlockLayer::add_tensor(Slot slot, LlamaTensorRole role, const QuantMatrixView& view) {
  m_position[slot] = static_cast<int>(m_tensors.size());
  m_tensors.push_back({llama_tensor_name(role, m_index), view});
}

LlamaLayerWeights LlamaBlockLayer::rebind(std::span<const QuantMatrixView> v) const {
  auto matrix = [&](Slot s) { return v[static_cast<size_t>(m_position[s])]; };
  auto vector = [&](Slot s) {
    return m_position[s] < 0 ? nullptr : static_cast<const float*>(v[static_cast<size_t>(m_position[s])].data);
  };
  LlamaLayerWeights w{vector(ATTN_NORM), matrix(WQ),     matrix(WK),   matrix(WV),    matrix(WO),
                      vector(FFN_NORM),  matrix(W_GATE), matrix(W_UP), matrix(W_DOWN)};
  w.bq = vector(BQ);
  w.bk = vector(BK);
  w.bv = vector(BV);
  w.q_norm = vector(Q_NORM);
  w.k_norm = vector(K_NORM);
  return w;
}

size_t LlamaBlockLayer::workspace_floats(int64_t n_tokens, Device device) const {
  return LlamaBlockBuffers::workspace_floats(m_config, n_tokens, m_n_ctx, device);
}

uint64_t LlamaBlockLayer::kv_cache_bytes() const {
  return 2 * static_cast<uint64_t>(m_n_seq) * static_cast<uint64_t>(m_n_ctx) *
         static_cast<uint64_t>(m_config.n_embd_kv()) * sizeof(uint16_t);
}

void LlamaBlockLayer::kv_cache_traffic(const StepContext& step, std::vector<KvRange>& reads,
                                       std::vector<KvRange>& writes) const {
  // The layout of forward(): the K caches of every sequence, then their V caches, each [n_ctx, n_embd_kv] FP16.
  const uint64_t row = static_cast<uint64_t>(m_config.n_embd_kv()) * sizeof(uint16_t);
  const uint64_t cache = static_cast<uint64_t>(m_n_ctx) * row;
  const uint64_t v_base = static_cast<uint64_t>(m_n_seq) * cache;
  auto add = [&](int64_t slot, int64_t pos0, int64_t n_tokens) {
    const uint64_t start = static_cast<uint64_t>(slot) * cache;
    const auto before = static_cast<uint64_t>(pos0) * row, written = static_cast<uint64_t>(n_tokens) * row;
    for (uint64_t base : {start, v_base + start}) {
      if (before > 0) reads.push_back({base, before});
      if (written > 0) writes.push_back({base + before, written});
    }
  };
  if (step.sequences.empty())
    add(0, step.pos0, step.n_tokens);
  else
    for (const StepSequence& s : step.sequences) add(s.slot, s.pos0, s.n_tokens);
}

void LlamaBlockLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                              const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  // The K caches of every sequence, then their V caches.
  auto* kv = static_cast<uint16_t*>(run.kv_cache);
  const int64_t cache_values = m_n_ctx * m_config.n_embd_kv();
  const LlamaBlockBuffers buffers =
      LlamaBlockBuffers::carve(m_config, step.n_tokens, m_n_ctx, run.ops->device(), run.workspace);
  if (step.sequences.empty()) {
    const LlamaKvView view{kv, kv + m_n_seq * cache_values, m_n_ctx};
    llama_block_forward(*run.ops, m_config, rebind(weights), view, buffers, x, step.n_tokens, step.pos0);
    return;
  }
  std::vector<LlamaKvView> views;
  views.reserve(static_cast<size_t>(m_n_seq));
  for (int64_t s = 0; s < m_n_seq; ++s)
    views.push_back({kv + s * cache_values, kv + (m_n_seq + s) * cache_values, m_n_ctx});
  llama_block_forward_sequences(*run.ops, m_config, rebind(weights), views, buffers, x, step.n_tokens, step.sequences);
}

LlamaHeadLayer::LlamaHeadLayer(const LlamaConfig& config, const LlamaWeights& w, bool all_logits_capacity,
                               int64_t n_seq)
    : m_config(config), m_all_logits_capacity(all_logits_capacity), m_n_seq(n_seq) {
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
  // Only the last token's logits are needed to sample (of each sequence, placed last in a multi-sequence step);
  // prefill skips the others unless asked.
  const int64_t rows = step.all_logits ? step.n_tokens : std::max<int64_t>(step.logit_rows, 1);
  if (!step.all_logits && (rows > m_n_seq || rows > step.n_tokens))
    fail(ErrorCategory::INVALID_ARGUMENT, "layer '" + m_name + "': logits for " + std::to_string(rows) +
                                              " rows were asked for; the output holds " +
                                              std::to_string(std::min(m_n_seq, step.n_tokens)));
  llama_head_forward(*run.ops, m_config, static_cast<const float*>(weights[OUTPUT_NORM].data), weights[OUTPUT], x,
                     step.n_tokens, rows, run.workspace, run.output);
}

}  // namespace ferry
