// The `llama` architecture (Llama 1/2/3, Mistral, TinyLlama) and those that share its block (Qwen2, Qwen3) read from
// GGUF metadata: hyper-parameters, the tensor names (the one place they are spelled), and views of every weight tensor
// with its shape checked. The block that computes with them is block.hpp; where it runs is the scheduler's business.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <optional>

#include "ferry/kernels/matrix.hpp"

namespace ferry {

class GgufFile;

// The architectures with llama's block, as general.architecture names them (and as their metadata keys begin):
// - llama, mistral: the block of Llama 2/3 and Mistral 7B. The GGUF converter permutes the rows of Q and K so that
//   RoPE rotates adjacent pairs.
// - qwen2: biases on q, k and v. Weights are stored as trained, so RoPE rotates the pairs (i, i + d/2).
// - qwen3: each head of q and k is RMS-normalised with stored scales before RoPE ((i, i + d/2) pairs); the head size
//   comes from qwen3.attention.key_length and may differ from n_embd / n_head.
enum class LlamaArch { LLAMA, MISTRAL, QWEN2, QWEN3 };
std::string_view llama_arch_name(LlamaArch arch) noexcept;
std::optional<LlamaArch> parse_llama_arch(std::string_view name) noexcept;
// "llama, mistral, qwen2, qwen3" for messages.
std::string llama_arch_names();
// What an architecture adds to the llama block.
struct LlamaArchTraits {
  bool qkv_bias;  // attn_q.bias, attn_k.bias, attn_v.bias
  bool qk_norm;   // attn_q_norm.weight, attn_k_norm.weight: [head_dim] F32
  RopeMode rope;
};
LlamaArchTraits llama_arch_traits(LlamaArch arch) noexcept;

// The tensors of a llama file; the block roles repeat per block as "blk.N.<suffix>".
enum class LlamaTensorRole {
  TOKEN_EMBD,
  OUTPUT_NORM,
  OUTPUT,
  ATTN_NORM,
  ATTN_Q,
  ATTN_K,
  ATTN_V,
  ATTN_OUTPUT,
  FFN_NORM,
  FFN_GATE,
  FFN_UP,
  FFN_DOWN,
  ATTN_Q_BIAS,  // qwen2
  ATTN_K_BIAS,
  ATTN_V_BIAS,
  ATTN_Q_NORM,  // qwen3
  ATTN_K_NORM,
};
// "token_embd.weight" for the roles outside the blocks, "attn_q.weight" for a block role.
std::string_view llama_tensor_suffix(LlamaTensorRole role);
// The GGUF name: "output.weight", or "blk.3.attn_q.weight" for block role `role` of block `block`.
std::string llama_tensor_name(LlamaTensorRole role, int64_t block = -1);
// RMSNorm scales (F32, centred on 1).
bool llama_role_is_norm(LlamaTensorRole role) noexcept;
// One-dimensional tensors, stored as F32: the norms and the biases.
bool llama_role_is_vector(LlamaTensorRole role) noexcept;

struct LlamaConfig {
  LlamaArch arch = LlamaArch::LLAMA;
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_rot = 0;       // rope dimension count (= head_dim unless the file says otherwise)
  int64_t n_head_dim = 0;  // {arch}.attention.key_length; 0: n_embd / n_head
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;

  int64_t head_dim() const noexcept { return n_head_dim > 0 ? n_head_dim : n_embd / n_head; }
  int64_t n_embd_q() const noexcept { return head_dim() * n_head; }  // width of q and of the attention output
  int64_t n_embd_kv() const noexcept { return head_dim() * n_head_kv; }
  LlamaArchTraits traits() const noexcept { return llama_arch_traits(arch); }

  // Reads the {arch}.* keys of an architecture of LlamaArch; refuses any other general.architecture by name; throws
  // FORMAT/NOT_FOUND naming the key for a missing or inconsistent value (n_embd not divisible by n_head, ...).
  static LlamaConfig from_gguf(const GgufFile& file);
};

struct LlamaLayerWeights {
  const float* attn_norm;  // [n_embd] F32
  QuantMatrixView wq, wk, wv, wo;
  const float* ffn_norm;  // [n_embd] F32
  QuantMatrixView w_gate, w_up, w_down;
  const float* bq = nullptr;      // [n_embd_q] F32 (qwen2), else null
  const float* bk = nullptr;      // [n_embd_kv]
  const float* bv = nullptr;      // [n_embd_kv]
  const float* q_norm = nullptr;  // [head_dim] F32 (qwen3), else null
  const float* k_norm = nullptr;  // [head_dim]
};

struct LlamaWeights {
  QuantMatrixView token_embd;  // [n_vocab rows, n_embd]
  const float* output_norm;
  QuantMatrixView output;  // token_embd when the file ties them
  bool tied_output = false;
  std::vector<LlamaLayerWeights> layers;

  // Views into the file's mapping (valid while `file` lives); null data when `file` was opened header-only (the views
  // then size a stack without its bytes). Throws FORMAT naming the tensor, its shape or type and what was expected.
  static LlamaWeights from_gguf(const GgufFile& file, const LlamaConfig& config);
  // Bytes of every weight of a layer (for placement and streaming).
  static uint64_t layer_bytes(const LlamaLayerWeights& layer, const LlamaConfig& config);
};

}  // namespace ferry
