#include "ferry/models/model_presets.hpp"

#include <array>
#include <string>

#include "ferry/error.hpp"

namespace ferry {
namespace {

// The real llama shapes are copied from shared/data/model-shapes.json (tests/test_model_maker.cpp compares them with
// the file); Qwen2.5-7B and Qwen3-8B are their published configurations. qwen3-tiny's heads (96 wide, q 384 wide) are
// deliberately not n_embd / n_head, as Qwen3's small models' are not. tiny and small share each KV head between 2 query
// heads (GQA) so every code path that real GQA models take is exercised, and small's n_ff (1408 = 5.5 * 256) is
// deliberately not a multiple of 256 so k-quant files of the default model contain the Q5_0/Q8_0 fallback tensors that
// real files have. (aligned by hand: a table reads better as columns)
// clang-format off
constexpr std::array kPresets = {
    //          name           layer  embd    ff     head kv   vocab    ctx    rope base   rms eps
    LlamaShape{"tiny",         2,     256,    768,   4,   2,   512,     512,   10000.0f,   1e-5f},
    LlamaShape{"small",        4,     512,    1408,  8,   4,   4096,    1024,  10000.0f,   1e-5f},
    LlamaShape{"llama-2-7b",   32,    4096,   11008, 32,  32,  32000,   4096,  10000.0f,   1e-5f},
    LlamaShape{"llama-2-13b",  40,    5120,   13824, 40,  40,  32000,   4096,  10000.0f,   1e-5f},
    LlamaShape{"llama-2-70b",  80,    8192,   28672, 64,  8,   32000,   4096,  10000.0f,   1e-5f},
    LlamaShape{"llama-3-8b",   32,    4096,   14336, 32,  8,   128256,  8192,  500000.0f,  1e-5f},
    LlamaShape{"mistral-7b",   32,    4096,   14336, 32,  8,   32000,   32768, 1000000.0f, 1e-5f},
    LlamaShape{"qwen2-tiny",   2,     256,    768,   4,   2,   512,     512,   1000000.0f, 1e-6f, LlamaArch::QWEN2},
    LlamaShape{"qwen3-tiny",   2,     256,    768,   4,   2,   512,     512,   1000000.0f, 1e-6f, LlamaArch::QWEN3, 96},
    LlamaShape{"qwen2.5-7b",   28,    3584,   18944, 28,  4,   152064,  32768, 1000000.0f, 1e-6f, LlamaArch::QWEN2},
    LlamaShape{"qwen3-8b",     36,    4096,   12288, 32,  8,   151936,  40960, 1000000.0f, 1e-6f, LlamaArch::QWEN3, 128},
};
// clang-format on

[[noreturn]] void bad_shape(const LlamaShape& s, const std::string& what) {
  fail(ErrorCategory::INVALID_ARGUMENT, "llama shape '" + std::string(s.name) + "': " + what);
}

}  // namespace

int64_t LlamaShape::parameter_count() const noexcept {
  const LlamaArchTraits traits = llama_arch_traits(arch);
  const int64_t per_layer = 2 * n_embd                                              // attn_norm, ffn_norm
                            + 2 * n_embd * n_embd_q()                               // attn_q, attn_output
                            + 2 * n_embd * n_embd_kv()                              // attn_k, attn_v
                            + 3 * n_embd * n_ff                                     // ffn_gate, ffn_up, ffn_down
                            + (traits.qkv_bias ? n_embd_q() + 2 * n_embd_kv() : 0)  // q, k, v biases
                            + (traits.qk_norm ? 2 * head_dim() : 0);                // q, k head norms
  return n_layer * per_layer + 2 * n_vocab * n_embd + n_embd;                       // + token_embd, output, output_norm
}

void LlamaShape::validate() const {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) bad_shape(*this, std::string(field) + " must be positive, found " + std::to_string(v));
  };
  positive(n_layer, "n_layer");
  positive(n_embd, "n_embd");
  positive(n_ff, "n_ff");
  positive(n_head, "n_head");
  positive(n_head_kv, "n_head_kv");
  positive(n_vocab, "n_vocab");
  positive(n_ctx_train, "n_ctx_train");
  if (n_head_dim < 0) bad_shape(*this, "n_head_dim must not be negative, found " + std::to_string(n_head_dim));
  if (n_head_dim == 0 && n_embd % n_head != 0)
    bad_shape(*this, "n_embd " + std::to_string(n_embd) + " is not divisible by n_head " + std::to_string(n_head));
  if (n_head % n_head_kv != 0)
    bad_shape(*this,
              "n_head " + std::to_string(n_head) + " is not divisible by n_head_kv " + std::to_string(n_head_kv));
  if (head_dim() % 2 != 0) bad_shape(*this, "head_dim " + std::to_string(head_dim()) + " is odd (RoPE needs pairs)");
  if (n_embd % 32 != 0) bad_shape(*this, "n_embd " + std::to_string(n_embd) + " is not a multiple of 32");
  if (n_ff % 32 != 0) bad_shape(*this, "n_ff " + std::to_string(n_ff) + " is not a multiple of 32");
  if (n_embd_q() % 32 != 0) bad_shape(*this, "the q width " + std::to_string(n_embd_q()) + " is not a multiple of 32");
  if (n_vocab < 259) bad_shape(*this, "n_vocab " + std::to_string(n_vocab) + " is below the minimum of 259");
  if (!(rope_freq_base > 0.0f)) bad_shape(*this, "rope_freq_base must be positive");
  if (!(rms_eps > 0.0f)) bad_shape(*this, "rms_eps must be positive");
}

std::span<const LlamaShape> llama_presets() noexcept { return kPresets; }

const LlamaShape* find_llama_preset(std::string_view name) noexcept {
  for (const auto& p : kPresets)
    if (p.name == name) return &p;
  return nullptr;
}

const LlamaShape& llama_preset(std::string_view name) {
  const LlamaShape* p = find_llama_preset(name);
  if (!p)
    fail(ErrorCategory::NOT_FOUND,
         "unknown llama preset '" + std::string(name) + "' (presets: " + llama_preset_names() + ")");
  return *p;
}

std::string llama_preset_names() {
  std::string out;
  for (const auto& p : kPresets) {
    if (!out.empty()) out += ", ";
    out += p.name;
  }
  return out;
}

}  // namespace ferry
