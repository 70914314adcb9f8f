// The llama architecture as scheduler layers: one LlamaBlockLayer per transformer block, and LlamaHeadLayer (final
// RMSNorm + output projection) last, which writes logits to the scheduler's output buffer. Both run block.hpp's
// functions over the Ops the scheduler hands them, so a layer's placement (resident, streamed, CPU) changes where it
// runs, not what it computes. Per-step inputs (pos0, all_logits) come in the StepContext.
#pragma once

#include <algorithm>
#include <array>

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/models/llama/model.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry {

class LlamaBlockLayer final : public Layer {
 public:
  // The KV cache holds n_ctx positions for each of n_seq sequences (StepContext::sequences picks one per entry).
  LlamaBlockLayer(const LlamaConfig& config, const LlamaLayerWeights& weights, int64_t index, int64_t n_ctx,
                  int64_t n_seq = 1);

  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_config.n_embd; }
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  uint64_t kv_cache_bytes() const override;
  // Per sequence of the step: K and V rows [0, pos0) read, [pos0, pos0 + n_tokens) written.
  void kv_cache_traffic(const StepContext& step, std::vector<KvRange>& reads,
                        std::vector<KvRange>& writes) const override;
  // The block reads the step's position only through Ops (positions, KV store, attention).
  bool replayable() const override { return true; }
  int64_t position_limit() const override { return m_n_ctx; }
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;

  // The block's tensors: the nine of every llama block, then the architecture's extras (LlamaArchTraits).
  enum Slot : size_t { ATTN_NORM, WQ, WK, WV, WO, FFN_NORM, W_GATE, W_UP, W_DOWN, BQ, BK, BV, Q_NORM, K_NORM, COUNT };

 private:
  void add_tensor(Slot slot, LlamaTensorRole role, const QuantMatrixView& view);
  LlamaLayerWeights rebind(std::span<const QuantMatrixView> views) const;

  const LlamaConfig& m_config;
  std::string m_name;
  int64_t m_index;
  int64_t m_n_ctx;
  int64_t m_n_seq;
  std::vector<WeightTensor> m_tensors;  // the tensors the file has, in Slot order
  std::array<int, COUNT> m_position;    // a slot's index in m_tensors; -1 where the architecture has none
};

class LlamaHeadLayer final : public Layer {
 public:
  // all_logits_capacity: the output holds logits for every token of a step (StepContext::all_logits may be set);
  // else for its last n_seq tokens (StepContext::logit_rows: one per sequence of a multi-sequence step).
  LlamaHeadLayer(const LlamaConfig& config, const LlamaWeights& weights, bool all_logits_capacity, int64_t n_seq = 1);

  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_config.n_embd; }
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  size_t output_floats(int64_t n_tokens) const override {
    return static_cast<size_t>((m_all_logits_capacity ? n_tokens : std::min(n_tokens, m_n_seq)) * m_config.n_vocab);
  }
  bool replayable() const override { return true; }  // the norm and the matmul: nothing positional
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;

  enum : size_t { OUTPUT_NORM, OUTPUT, COUNT };

 private:
  const LlamaConfig& m_config;
  std::string m_name = "output";
  bool m_all_logits_capacity;
  int64_t m_n_seq;
  std::vector<WeightTensor> m_tensors;
};

}  // namespace ferry
