#include "ferry/models/llama/block.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ferry/error.hpp"
#include "ferry/kernels/device_sizing.hpp"

namespace ferry {
namespace {

// Query rows per attention chunk on the GPU: long prompts are processed in pieces so the score matrix stays small.
constexpr int64_t kAttentionChunkRows = 256;
constexpr size_t kScratchAlignFloats = device_sizing::kScratchAlign / sizeof(float);

AttentionShape attention_shape(const LlamaConfig& c, int64_t n_tokens, int64_t n_kv, int64_t pos0) {
  return AttentionShape{n_tokens,     n_kv, c.n_head, c.n_head_kv,
                        c.head_dim(), pos0, true,     1.0f / std::sqrt(static_cast<float>(c.head_dim()))};
}

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

// The GPU attention scratch for steps of exactly n_tokens against the whole cache (it does not depend on pos0).
size_t attention_bytes_at(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx) {
  return device_sizing::attention_scratch_bytes(attention_shape(c, n_tokens, n_ctx, n_ctx - n_tokens),
                                                std::min<int64_t>(n_tokens, kAttentionChunkRows));
}

// The most any step of up to n_tokens needs. The scratch is not monotone in the token count: a few queries take the
// split-KV decode kernel, whose partials can outgrow the chunked path's scores when the context is short.
size_t attention_bytes(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx) {
  size_t most = attention_bytes_at(c, n_tokens, n_ctx);
  for (int64_t t = 1; t < std::min<int64_t>(n_tokens, device_sizing::kAttentionDecodeMaxQueries + 1); ++t)
    most = std::max(most, attention_bytes_at(c, t, n_ctx));
  return round_up(most, device_sizing::kScratchAlign);
}

}  // namespace

size_t LlamaBlockBuffers::buffer_floats(const LlamaConfig& c, int64_t T) {
  return static_cast<size_t>(T * (2 * c.n_embd + 2 * c.n_embd_q() + 2 * c.n_embd_kv() + 2 * c.n_ff + 1));
}

size_t LlamaBlockBuffers::workspace_floats(const LlamaConfig& c, int64_t T, int64_t n_ctx, Device device) {
  const size_t buffers = buffer_floats(c, T);
  if (device == Device::CPU) return buffers;
  // The attention scratch starts at the next 256-byte boundary after the buffers.
  return round_up(buffers, kScratchAlignFloats) + attention_bytes(c, T, n_ctx) / sizeof(float);
}

LlamaBlockBuffers LlamaBlockBuffers::carve(const LlamaConfig& c, int64_t T, int64_t n_ctx, Device device, float* ws) {
  LlamaBlockBuffers b;
  float* p = ws;
  auto take = [&](int64_t width) {
    float* r = p;
    p += T * width;
    return r;
  };
  b.xn = take(c.n_embd);
  b.q = take(c.n_embd_q());
  b.k = take(c.n_embd_kv());
  b.v = take(c.n_embd_kv());
  b.attn = take(c.n_embd_q());
  b.proj = take(c.n_embd);
  b.gate = take(c.n_ff);
  b.up = take(c.n_ff);
  static_assert(sizeof(int32_t) == sizeof(float));
  b.positions = reinterpret_cast<int32_t*>(take(1));
  if (device == Device::GPU) {
    float* scratch = ws + round_up(buffer_floats(c, T), kScratchAlignFloats);
    b.attention = {reinterpret_cast<std::byte*>(scratch), attention_bytes(c, T, n_ctx)};
  }
  return b;
}

void llama_block_forward(Ops& ops, const LlamaConfig& c, const LlamaLayerWeights& w, const LlamaKvView& kv,
                         const LlamaBlockBuffers& b, float* x, int64_t n_tokens, int64_t pos0) {
  const StepSequence one{0, pos0, n_tokens};
  llama_block_forward_sequences(ops, c, w, std::span<const LlamaKvView>(&kv, 1), b, x, n_tokens,
                                std::span<const StepSequence>(&one, 1));
}

void llama_block_forward_sequences(Ops& ops, const LlamaConfig& c, const LlamaLayerWeights& w,
                                   std::span<const LlamaKvView> caches, const LlamaBlockBuffers& b, float* x,
                                   int64_t n_tokens, std::span<const StepSequence> sequences) {
  const int64_t q_width = c.n_embd_q(), kv_width = c.n_embd_kv(), T = n_tokens;
  const LlamaArchTraits traits = c.traits();
  int64_t covered = 0;
  for (const StepSequence& s : sequences) {
    if (s.slot < 0 || s.slot >= static_cast<int64_t>(caches.size()) || s.n_tokens < 1)
      fail(ErrorCategory::INVALID_ARGUMENT, "llama block: a step entry names KV cache " + std::to_string(s.slot) +
                                                " with " + std::to_string(s.n_tokens) + " tokens; there are " +
                                                std::to_string(caches.size()) + " caches");
    const LlamaKvView& kv = caches[static_cast<size_t>(s.slot)];
    if (s.pos0 < 0 || s.pos0 + s.n_tokens > kv.n_ctx)
      fail(ErrorCategory::INVALID_ARGUMENT, "llama block: positions up to " + std::to_string(s.pos0 + s.n_tokens) +
                                                " exceed the KV cache of " + std::to_string(kv.n_ctx));
    covered += s.n_tokens;
  }
  if (covered != T)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "llama block: the step's entries hold " + std::to_string(covered) + " tokens, the step " + std::to_string(T));
  {  // q, k and v share the normalised x: one launch for the three where the backend fuses them (the GPU's GEMV)
    const QuantMatrixView qkv[] = {w.wq, w.wk, w.wv};
    float* const qkv_out[] = {b.q, b.k, b.v};
    ops.rms_norm_matmul_batch(x, w.attn_norm, c.rms_eps, qkv, T, qkv_out, b.xn);
  }
  if (traits.qkv_bias) {
    ops.add_bias(b.q, w.bq, b.q, T, q_width);
    ops.add_bias(b.k, w.bk, b.k, T, kv_width);
    ops.add_bias(b.v, w.bv, b.v, T, kv_width);
  }
  if (traits.qk_norm) {  // each head is a row of head_dim
    ops.rms_norm(b.q, w.q_norm, b.q, T * c.n_head, c.head_dim(), c.rms_eps);
    ops.rms_norm(b.k, w.k_norm, b.k, T * c.n_head_kv, c.head_dim(), c.rms_eps);
  }
  if (sequences.size() == 1) {  // one sequence (a prompt, single-user decode): RoPE and the KV store as one op
    const StepSequence& s = sequences[0];
    const LlamaKvView& kv = caches[static_cast<size_t>(s.slot)];
    ops.rope_store_kv(b.q, b.k, b.v, T, c.n_head, c.n_head_kv, c.head_dim(), s.pos0, c.rope_freq_base, traits.rope,
                      kv.k, kv.v, kv.n_ctx, b.positions);
    ops.attention(attention_shape(c, T, s.pos0 + T, s.pos0), b.q, kv.k, kv.v, b.attn, b.attention);
  } else {
    int64_t t0 = 0;
    for (const StepSequence& s : sequences) {
      ops.positions(b.positions + t0, s.n_tokens, s.pos0);
      t0 += s.n_tokens;
    }
    ops.rope(b.q, T, c.n_head, c.head_dim(), b.positions, c.rope_freq_base, traits.rope);
    ops.rope(b.k, T, c.n_head_kv, c.head_dim(), b.positions, c.rope_freq_base, traits.rope);
    t0 = 0;
    for (const StepSequence& s : sequences) {
      const LlamaKvView& kv = caches[static_cast<size_t>(s.slot)];
      ops.store_kv(b.k + t0 * kv_width, b.v + t0 * kv_width, kv.k, kv.v, s.n_tokens, s.pos0, kv_width, kv.n_ctx);
      ops.attention(attention_shape(c, s.n_tokens, s.pos0 + s.n_tokens, s.pos0), b.q + t0 * q_width, kv.k, kv.v,
                    b.attn + t0 * q_width, b.attention);
      t0 += s.n_tokens;
    }
  }
  ops.matmul_add(w.wo, b.attn, T, x, b.proj);  // x += attention output · woᵀ

  {
    const QuantMatrixView gate_up[] = {w.w_gate, w.w_up};
    float* const gate_up_out[] = {b.gate, b.up};
    ops.rms_norm_matmul_batch(x, w.ffn_norm, c.rms_eps, gate_up, T, gate_up_out, b.xn);
  }
  ops.swiglu_matmul_add(w.w_down, b.gate, b.up, T, x, b.proj);  // x += (silu(gate) ⊙ up) · downᵀ
}

void llama_head_forward(Ops& ops, const LlamaConfig& c, const float* output_norm, const QuantMatrixView& output,
                        const float* x, int64_t n_tokens, int64_t rows, float* normed, float* logits) {
  float* const out[] = {logits};
  ops.rms_norm_matmul_batch(x + (n_tokens - rows) * c.n_embd, output_norm, c.rms_eps,
                            std::span<const QuantMatrixView>(&output, 1), rows, out, normed);
}

void check_forward_arguments(const LlamaConfig& c, int64_t n_ctx, std::span<const int32_t> tokens, int64_t pos0,
                             size_t logits_size, bool all_logits) {
  const auto n = static_cast<int64_t>(tokens.size());
  if (pos0 < 0 || pos0 + n > n_ctx)
    fail(ErrorCategory::INVALID_ARGUMENT, "positions " + std::to_string(pos0) + " .. " + std::to_string(pos0 + n - 1) +
                                              " do not fit the context of " + std::to_string(n_ctx) + " tokens");
  const size_t need = static_cast<size_t>((all_logits ? n : 1) * c.n_vocab);
  if (logits_size < need)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "logits buffer of " + std::to_string(logits_size) + " floats, need " + std::to_string(need));
  for (int32_t id : tokens)
    if (id < 0 || id >= c.n_vocab)
      fail(ErrorCategory::INVALID_ARGUMENT,
           "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(c.n_vocab));
}

}  // namespace ferry
