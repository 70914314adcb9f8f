// The `llama` architecture (Llama 1/2/3, Mistral, TinyLlama) read from GGUF metadata: hyper-parameters, and views of
// every weight tensor with its shape checked. Backends (CPU here, GPU through offload/) run the forward pass over
// these views; this file knows nothing of where they run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/kernels/matrix.hpp"

namespace ferry {

class GgufFile;

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

  // Views into the file's mapping (valid while `file` lives). Throws FORMAT naming the tensor, its shape or type and
  // what was expected.
  static LlamaWeights from_gguf(const GgufFile& file, const LlamaConfig& config);
  // Bytes of every weight of layer `i` (for placement and streaming).
  static uint64_t layer_bytes(const LlamaLayerWeights& layer, int64_t n_embd);
};

}  // namespace ferry
