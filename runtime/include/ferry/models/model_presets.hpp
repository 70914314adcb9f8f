// Shapes for synthetic models of the llama block's architectures: the public shapes of real models (the llama ones
// from shared/data/model-shapes.json, embedded here because the GPU machine has no copy of that folder; Qwen2.5-7B and
// Qwen3-8B from their published configurations) and small ones: `tiny`, `qwen2-tiny`, `qwen3-tiny` for tests and
// `small`, the synthetic fallback of `ferry run` (a few MB).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ferry/models/llama/model.hpp"

namespace ferry {

struct LlamaShape {
  std::string_view name;
  int64_t n_layer;
  int64_t n_embd;
  int64_t n_ff;
  int64_t n_head;
  int64_t n_head_kv;
  int64_t n_vocab;
  int64_t n_ctx_train;
  float rope_freq_base;
  float rms_eps;
  LlamaArch arch = LlamaArch::LLAMA;
  int64_t n_head_dim = 0;  // 0: n_embd / n_head (written as {arch}.attention.key_length when set)

  int64_t head_dim() const noexcept { return n_head_dim > 0 ? n_head_dim : n_embd / n_head; }
  int64_t n_embd_q() const noexcept { return head_dim() * n_head; }
  int64_t n_embd_kv() const noexcept { return head_dim() * n_head_kv; }
  // Weights of all tensors (embedding and output counted separately: synthetic models never tie them).
  int64_t parameter_count() const noexcept;
  // Throws INVALID_ARGUMENT naming the shape and the field when the shape cannot describe a llama model: non-positive
  // sizes, n_embd not divisible by n_head (without an explicit head size), n_head not divisible by n_head_kv, an odd
  // head_dim (RoPE rotates pairs), n_embd, n_ff or the q width not a multiple of 32 (every quantized type needs whole
  // 32-element blocks), or n_vocab below the 259 tokens every vocabulary starts with (3 special tokens and 256 byte
  // tokens).
  void validate() const;
};

// Every preset, small ones first.
std::span<const LlamaShape> llama_presets() noexcept;
// nullptr when there is no preset of that name.
const LlamaShape* find_llama_preset(std::string_view name) noexcept;
// Throws NOT_FOUND naming the preset and listing the valid ones.
const LlamaShape& llama_preset(std::string_view name);
// "tiny, small, llama-2-7b, ..." for messages and help text.
std::string llama_preset_names();

}  // namespace ferry
