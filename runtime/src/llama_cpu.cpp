#include "ferry/llama_cpu.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cpu/ops.hpp"

namespace ferry {

size_t LlamaBlockBuffers::workspace_floats(const LlamaConfig& c, int64_t T) {
  return static_cast<size_t>(T * (4 * c.n_embd + 2 * c.n_embd_kv() + 2 * c.n_ff + 1));
}

LlamaBlockBuffers LlamaBlockBuffers::carve(const LlamaConfig& c, int64_t T, float* ws) {
  LlamaBlockBuffers b;
  float* p = ws;
  auto take = [&](int64_t width) {
    float* r = p;
    p += T * width;
    return r;
  };
  b.xn = take(c.n_embd);
  b.q = take(c.n_embd);
  b.k = take(c.n_embd_kv());
  b.v = take(c.n_embd_kv());
  b.attn = take(c.n_embd);
  b.proj = take(c.n_embd);
  b.gate = take(c.n_ff);
  b.up = take(c.n_ff);
  static_assert(sizeof(int32_t) == sizeof(float));
  b.positions = reinterpret_cast<int32_t*>(take(1));
  return b;
}

void llama_block_forward_cpu(const LlamaConfig& c, const LlamaLayerWeights& w, const LlamaKvView& kv,
                             const LlamaBlockBuffers& b, float* x, int64_t n_tokens, int64_t pos0) {
  const int64_t n_embd = c.n_embd, kv_width = c.n_embd_kv(), T = n_tokens;
  if (pos0 < 0 || pos0 + T > kv.n_ctx)
    fail(ErrorCategory::INVALID_ARGUMENT, "llama block: positions up to " + std::to_string(pos0 + T) +
                                              " exceed the KV cache of " + std::to_string(kv.n_ctx));
  int32_t* positions = b.positions;
  std::iota(positions, positions + T, static_cast<int32_t>(pos0));

  cpu::rms_norm(x, w.attn_norm, b.xn, T, n_embd, c.rms_eps);
  cpu::matmul(w.wq, b.xn, T, b.q);
  cpu::matmul(w.wk, b.xn, T, b.k);
  cpu::matmul(w.wv, b.xn, T, b.v);
  cpu::rope(b.q, T, c.n_head, c.head_dim(), positions, c.rope_freq_base, RopeMode::ADJACENT);
  cpu::rope(b.k, T, c.n_head_kv, c.head_dim(), positions, c.rope_freq_base, RopeMode::ADJACENT);
  for (int64_t i = 0; i < T * kv_width; ++i) {  // append to the FP16 cache
    kv.k[pos0 * kv_width + i] = fp32_to_fp16(b.k[i]);
    kv.v[pos0 * kv_width + i] = fp32_to_fp16(b.v[i]);
  }
  const AttentionShape shape{T, pos0 + T, c.n_head, c.n_head_kv, c.head_dim(), pos0, true,
                             1.0f / std::sqrt(static_cast<float>(c.head_dim()))};
  cpu::attention(shape, b.q, kv.k, kv.v, b.attn);
  cpu::matmul(w.wo, b.attn, T, b.proj);
  cpu::add(x, b.proj, x, T * n_embd);

  cpu::rms_norm(x, w.ffn_norm, b.xn, T, n_embd, c.rms_eps);
  cpu::matmul(w.w_gate, b.xn, T, b.gate);
  cpu::matmul(w.w_up, b.xn, T, b.up);
  cpu::silu_mul(b.gate, b.up, b.gate, T * c.n_ff);
  cpu::matmul(w.w_down, b.gate, T, b.proj);
  cpu::add(x, b.proj, x, T * n_embd);
}

void check_forward_arguments(const LlamaConfig& c, int64_t n_ctx, std::span<const int32_t> tokens, int64_t pos0,
                             size_t logits_size, bool all_logits) {
  const auto n = static_cast<int64_t>(tokens.size());
  if (pos0 < 0 || pos0 + n > n_ctx)
    fail(ErrorCategory::INVALID_ARGUMENT, "positions " + std::to_string(pos0) + " .. " + std::to_string(pos0 + n - 1) +
                                              " do not fit the context of " + std::to_string(n_ctx) + " tokens");
  const size_t need = static_cast<size_t>((all_logits ? n : 1) * c.n_vocab);
  if (logits_size < need)
    fail(ErrorCategory::INVALID_ARGUMENT, "logits buffer of " + std::to_string(logits_size) + " floats, need " +
                                              std::to_string(need));
  for (int32_t id : tokens)
    if (id < 0 || id >= c.n_vocab)
      fail(ErrorCategory::INVALID_ARGUMENT, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                                                std::to_string(c.n_vocab));
}

LlamaCpuRunner::LlamaCpuRunner(const LlamaConfig& config, const LlamaWeights& weights, int64_t n_ctx,
                               int64_t max_chunk)
    : m_config(config), m_weights(weights), m_n_ctx(n_ctx), m_max_chunk(max_chunk) {
  if (n_ctx <= 0 || max_chunk <= 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "context length and chunk size must be positive");
  m_kv.assign(static_cast<size_t>(2 * config.n_layer * n_ctx * config.n_embd_kv()), 0);
  m_workspace.resize(LlamaBlockBuffers::workspace_floats(config, max_chunk));
  m_x.resize(static_cast<size_t>(max_chunk * config.n_embd));
  m_xn.resize(static_cast<size_t>(max_chunk * config.n_embd));
}

void LlamaCpuRunner::forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits,
                             bool all_logits) {
  const LlamaConfig& c = m_config;
  check_forward_arguments(c, m_n_ctx, tokens, pos0, logits.size(), all_logits);
  const auto n = static_cast<int64_t>(tokens.size());
  const size_t kv_elems = static_cast<size_t>(m_n_ctx * c.n_embd_kv());
  for (int64_t start = 0; start < n; start += m_max_chunk) {
    const int64_t T = std::min(m_max_chunk, n - start);
    const LlamaBlockBuffers buffers = LlamaBlockBuffers::carve(c, T, m_workspace.data());
    cpu::embedding_lookup(m_weights.token_embd, tokens.data() + start, T, m_x.data());
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const LlamaKvView kv{m_kv.data() + (2 * l) * kv_elems, m_kv.data() + (2 * l + 1) * kv_elems, m_n_ctx};
      llama_block_forward_cpu(c, m_weights.layers[l], kv, buffers, m_x.data(), T, pos0 + start);
    }
    if (all_logits) {
      cpu::rms_norm(m_x.data(), m_weights.output_norm, m_xn.data(), T, c.n_embd, c.rms_eps);
      cpu::matmul(m_weights.output, m_xn.data(), T, logits.data() + start * c.n_vocab);
    } else if (start + T == n) {
      cpu::rms_norm(m_x.data() + (T - 1) * c.n_embd, m_weights.output_norm, m_xn.data(), 1, c.n_embd, c.rms_eps);
      cpu::matmul(m_weights.output, m_xn.data(), 1, logits.data());
    }
  }
}

}  // namespace ferry
