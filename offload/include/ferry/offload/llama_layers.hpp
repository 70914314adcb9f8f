// The llama architecture as scheduler layers: one LlamaBlockLayer per transformer block, and LlamaHeadLayer (final
// RMSNorm + output projection) last, which writes logits to the scheduler's output buffer. The layers share a
// LlamaStep the runner fills before each scheduler step (the position of the first token and whether every token's
// logits are wanted), since the Layer interface itself only carries the residual stream.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/llama_model.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry {

struct LlamaStep {
  int64_t pos0 = 0;         // position of the step's first token
  bool all_logits = false;  // the head computes logits for every token, not only the last
};

class LlamaBlockLayer final : public Layer {
 public:
  // The KV cache holds n_ctx positions; `step` must outlive the layer.
  LlamaBlockLayer(const LlamaConfig& config, const LlamaLayerWeights& weights, int64_t index, int64_t n_ctx,
                  const LlamaStep* step);

  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_config.n_embd; }
  size_t workspace_floats(int64_t n_tokens) const override;
  uint64_t kv_cache_bytes() const override;
  void forward_gpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                   const GpuLayerContext& context) const override;
  void forward_cpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                   const CpuLayerContext& context) const override;

  // Tensor order in weights().
  enum : size_t { ATTN_NORM, WQ, WK, WV, WO, FFN_NORM, W_GATE, W_UP, W_DOWN, COUNT };

 private:
  LlamaLayerWeights rebind(std::span<const QuantMatrixView> views) const;

  const LlamaConfig& m_config;
  std::string m_name;
  int64_t m_n_ctx;
  const LlamaStep* m_step;
  std::vector<WeightTensor> m_tensors;
};

class LlamaHeadLayer final : public Layer {
 public:
  // all_logits_capacity: the output holds logits for every token of a step (LlamaStep::all_logits may be set); else
  // for its last token only.
  LlamaHeadLayer(const LlamaConfig& config, const LlamaWeights& weights, const LlamaStep* step,
                 bool all_logits_capacity);

  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_config.n_embd; }
  size_t workspace_floats(int64_t n_tokens) const override;
  size_t output_floats(int64_t n_tokens) const override {
    return static_cast<size_t>((m_all_logits_capacity ? n_tokens : 1) * m_config.n_vocab);
  }
  // The first token whose logits a step computes (0, or the last token), after checking the step asks for no more
  // than the output holds.
  int64_t first_logit_row(int64_t n_tokens) const;
  void forward_gpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                   const GpuLayerContext& context) const override;
  void forward_cpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                   const CpuLayerContext& context) const override;

  enum : size_t { OUTPUT_NORM, OUTPUT, COUNT };

 private:
  const LlamaConfig& m_config;
  std::string m_name = "output";
  const LlamaStep* m_step;
  bool m_all_logits_capacity;
  std::vector<WeightTensor> m_tensors;
};

// GPU scratch a block needs besides its activations (attention over n_ctx keys, positions), in floats; 0 in builds
// without CUDA. Defined next to the GPU forward pass.
size_t llama_block_gpu_extra_floats(const LlamaConfig& config, int64_t n_tokens, int64_t n_ctx);

}  // namespace ferry
