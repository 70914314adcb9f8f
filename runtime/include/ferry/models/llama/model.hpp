// The `llama` architecture (Llama 1/2/3, Mistral, TinyLlama) read from GGUF metadata: hyper-parameters, the tensor
// names (the one place they are spelled), and views of every weight tensor with its shape checked. The block that
// computes with them is block.hpp; where it runs is the scheduler's business.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/kernels/matrix.hpp"

namespace ferry {

class GgufFile;

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
};
// "token_embd.weight" for the roles outside the blocks, "attn_q.weight" for a block role.
std::string_view llama_tensor_suffix(LlamaTensorRole role);
// The GGUF name: "output.weight", or "blk.3.attn_q.weight" for block role `role` of block `block`.
std::string llama_tensor_name(LlamaTensorRole role, int64_t block = -1);
bool llama_role_is_norm(LlamaTensorRole role) noexcept;

struct LlamaConfig {
  int64_t n_layer = 0;
  int64_t n_embd = 0;
  int64_t n_ff = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_rot = 0;  // rope dimension count (= head_dim unless the file says otherwise)
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;

  int64_t head_dim() const noexcept { return n_embd / n_head; }
  int64_t n_embd_kv() const noexcept { return head_dim() * n_head_kv; }

  // Reads llama.* keys; refuses any other general.architecture by name; throws FORMAT/NOT_FOUND naming the key for a
  // missing or inconsistent value (n_embd not divisible by n_head, ...).
  static LlamaConfig from_gguf(const GgufFile& file);
};

struct LlamaLayerWeights {
  const float* attn_norm;  // [n_embd] F32
  QuantMatrixView wq, wk, wv, wo;
  const float* ffn_norm;  // [n_embd] F32
  QuantMatrixView w_gate, w_up, w_down;
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
  // Bytes of every weight of layer `i` (for placement and streaming).
  static uint64_t layer_bytes(const LlamaLayerWeights& layer, int64_t n_embd);
};

}  // namespace ferry
