// The llama forward pass on the CPU (ferry::cpu kernels: Eigen + oneTBB), with an FP16 KV cache in host memory.
// One block's forward is a free function over caller-owned buffers so a scheduler can run any single layer on the CPU
// from its own workspace.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ferry/generate.hpp"
#include "ferry/llama_model.hpp"

namespace ferry {

// Per-step activations of one block for T tokens, carved from one float workspace (the same layout on the GPU).
struct LlamaBlockBuffers {
  float *xn, *q, *k, *v, *attn, *proj, *gate, *up;
  int32_t* positions;  // T token positions (one float's room each): the step allocates nothing
  static size_t workspace_floats(const LlamaConfig& c, int64_t n_tokens);
  static LlamaBlockBuffers carve(const LlamaConfig& c, int64_t n_tokens, float* workspace);
};

// KV cache of one layer: n_ctx positions x n_embd_kv FP16 values (bit patterns) for K and for V.
struct LlamaKvView {
  uint16_t* k;
  uint16_t* v;
  int64_t n_ctx;
};

// x [n_tokens, n_embd] is updated in place: x += attention(rms_norm(x)); x += ffn(rms_norm(x)). Token t sits at
// position pos0 + t; its K and V are stored in the cache; attention sees positions 0 .. pos0 + t.
void llama_block_forward_cpu(const LlamaConfig& c, const LlamaLayerWeights& w, const LlamaKvView& kv,
                             const LlamaBlockBuffers& b, float* x, int64_t n_tokens, int64_t pos0);

class LlamaCpuRunner final : public LlamaBackend {
 public:
  // Tokens are processed in chunks of at most `max_chunk` (prefill); n_ctx bounds the KV cache.
  LlamaCpuRunner(const LlamaConfig& config, const LlamaWeights& weights, int64_t n_ctx, int64_t max_chunk = 256);

  int64_t n_ctx() const noexcept override { return m_n_ctx; }
  int64_t n_vocab() const noexcept override { return m_config.n_vocab; }
  // Runs `tokens` at positions pos0 .. pos0 + size - 1 (the cache must hold positions < pos0 from earlier calls).
  // Writes the logits of every token ([size, n_vocab]) when all_logits, else of the last token only ([n_vocab]).
  // Throws INVALID_ARGUMENT when the context would overflow or a token id is outside the vocabulary.
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override;

 private:
  const LlamaConfig& m_config;
  const LlamaWeights& m_weights;
  int64_t m_n_ctx;
  int64_t m_max_chunk;
  std::vector<uint16_t> m_kv;  // [n_layer][k|v][n_ctx * n_embd_kv]
  std::vector<float> m_workspace;
  std::vector<float> m_x;
  std::vector<float> m_xn;
};

// Checks shared by every backend's forward(): positions within the context, the logits buffer large enough, token ids
// inside the vocabulary. Throws INVALID_ARGUMENT with the numbers.
void check_forward_arguments(const LlamaConfig& c, int64_t n_ctx, std::span<const int32_t> tokens, int64_t pos0,
                             size_t logits_size, bool all_logits);

}  // namespace ferry
