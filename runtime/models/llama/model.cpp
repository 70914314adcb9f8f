#include "ferry/models/llama/model.hpp"

#include <cstdint>
#include <string>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"

namespace ferry {
namespace {

std::string shape_string(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

int64_t positive_key(const GgufFile& file, const std::string& key) {
  const auto v = file.get<int64_t>(key);
  if (v <= 0)
    fail(ErrorCategory::FORMAT, file.name() + ": key '" + key + "' must be positive, found " + std::to_string(v));
  return v;
}

const GgufTensorInfo& expect_tensor(const GgufFile& file, const std::string& name, std::vector<int64_t> ne) {
  const GgufTensorInfo& t = file.tensor(name);
  if (t.ne != ne)
    fail(ErrorCategory::FORMAT, file.name() + ": tensor '" + name + "' has shape " + shape_string(t.ne) +
                                    ", expected " + shape_string(ne) + " (ne order)");
  if (!type_traits(t.type).dequantizable)
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": tensor '" + name + "' has type " +
                                         std::string(type_name(t.type)) + ", which ferry cannot compute with");
  return t;
}

// The tensor's bytes in the mapping; null for a header-only file (the views then only describe the stack).
const void* data_of(const GgufFile& file, const GgufTensorInfo& t) {
  return file.has_data() ? file.tensor_data(t).data() : nullptr;
}

// A norm scale or a bias: [n] F32.
const float* vector_weight(const GgufFile& file, const std::string& name, int64_t n) {
  const GgufTensorInfo& t = expect_tensor(file, name, {n});
  if (t.type != GgmlType::F32)
    fail(ErrorCategory::UNSUPPORTED,
         file.name() + ": tensor '" + name + "' has type " + std::string(type_name(t.type)) + ", expected F32");
  const void* data = data_of(file, t);
  if (reinterpret_cast<uintptr_t>(data) % alignof(float) != 0)
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": tensor '" + name + "' at file offset " +
                                         std::to_string(t.file_offset) + " is not 4-byte aligned");
  return static_cast<const float*>(data);
}

// A tensor the architecture requires: a missing one is refused naming the tensor and why it must be there (the
// generic "tensor not found" would not say that the file's architecture asks for it).
const float* required_vector(const GgufFile& file, LlamaArch arch, const std::string& name, int64_t n) {
  if (!file.find_tensor(name))
    fail(ErrorCategory::FORMAT, file.name() + ": tensor '" + name + "' is missing (architecture '" +
                                    std::string(llama_arch_name(arch)) + "' has it in every block)");
  return vector_weight(file, name, n);
}

struct ArchEntry {
  LlamaArch arch;
  std::string_view name;
  LlamaArchTraits traits;
};
constexpr ArchEntry kArchs[] = {
    {LlamaArch::LLAMA, "llama", {false, false, RopeMode::ADJACENT}},
    {LlamaArch::MISTRAL, "mistral", {false, false, RopeMode::ADJACENT}},
    {LlamaArch::QWEN2, "qwen2", {true, false, RopeMode::HALF_SPLIT}},
    {LlamaArch::QWEN3, "qwen3", {false, true, RopeMode::HALF_SPLIT}},
};

const ArchEntry& entry_of(LlamaArch arch) noexcept {
  for (const ArchEntry& e : kArchs)
    if (e.arch == arch) return e;
  return kArchs[0];
}

QuantMatrixView matrix(const GgufFile& file, const std::string& name, int64_t n_cols, int64_t n_rows) {
  const GgufTensorInfo& t = expect_tensor(file, name, {n_cols, n_rows});
  const void* data = data_of(file, t);
  // The kernels read F32 weights as floats and every other type in 2-byte units (halves, FP16 block scales); a file
  // written with general.alignment 1 could place a tensor where those loads would be misaligned.
  const size_t align = t.type == GgmlType::F32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(data) % align != 0)
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": tensor '" + name + "' at file offset " +
                                         std::to_string(t.file_offset) + " is not " + std::to_string(align) +
                                         "-byte aligned (" + std::string(type_name(t.type)) + " weights need it)");
  return QuantMatrixView{t.type, data, n_cols, n_rows};
}

}  // namespace

std::string_view llama_arch_name(LlamaArch arch) noexcept { return entry_of(arch).name; }

std::optional<LlamaArch> parse_llama_arch(std::string_view name) noexcept {
  for (const ArchEntry& e : kArchs)
    if (e.name == name) return e.arch;
  return std::nullopt;
}

std::string llama_arch_names() {
  std::string names;
  for (const ArchEntry& e : kArchs) names += (names.empty() ? "" : ", ") + std::string(e.name);
  return names;
}

LlamaArchTraits llama_arch_traits(LlamaArch arch) noexcept { return entry_of(arch).traits; }

std::string_view llama_tensor_suffix(LlamaTensorRole role) {
  switch (role) {
    case LlamaTensorRole::TOKEN_EMBD:
      return "token_embd.weight";
    case LlamaTensorRole::OUTPUT_NORM:
      return "output_norm.weight";
    case LlamaTensorRole::OUTPUT:
      return "output.weight";
    case LlamaTensorRole::ATTN_NORM:
      return "attn_norm.weight";
    case LlamaTensorRole::ATTN_Q:
      return "attn_q.weight";
    case LlamaTensorRole::ATTN_K:
      return "attn_k.weight";
    case LlamaTensorRole::ATTN_V:
      return "attn_v.weight";
    case LlamaTensorRole::ATTN_OUTPUT:
      return "attn_output.weight";
    case LlamaTensorRole::FFN_NORM:
      return "ffn_norm.weight";
    case LlamaTensorRole::FFN_GATE:
      return "ffn_gate.weight";
    case LlamaTensorRole::FFN_UP:
      return "ffn_up.weight";
    case LlamaTensorRole::FFN_DOWN:
      return "ffn_down.weight";
    case LlamaTensorRole::ATTN_Q_BIAS:
      return "attn_q.bias";
    case LlamaTensorRole::ATTN_K_BIAS:
      return "attn_k.bias";
    case LlamaTensorRole::ATTN_V_BIAS:
      return "attn_v.bias";
    case LlamaTensorRole::ATTN_Q_NORM:
      return "attn_q_norm.weight";
    case LlamaTensorRole::ATTN_K_NORM:
      return "attn_k_norm.weight";
  }
  fail(ErrorCategory::INTERNAL, "unknown llama tensor role " + std::to_string(static_cast<int>(role)));
}

std::string llama_tensor_name(LlamaTensorRole role, int64_t block) {
  const std::string suffix(llama_tensor_suffix(role));
  return block < 0 ? suffix : "blk." + std::to_string(block) + "." + suffix;
}

bool llama_role_is_norm(LlamaTensorRole role) noexcept {
  return role == LlamaTensorRole::OUTPUT_NORM || role == LlamaTensorRole::ATTN_NORM ||
         role == LlamaTensorRole::FFN_NORM || role == LlamaTensorRole::ATTN_Q_NORM ||
         role == LlamaTensorRole::ATTN_K_NORM;
}

bool llama_role_is_vector(LlamaTensorRole role) noexcept {
  return llama_role_is_norm(role) || role == LlamaTensorRole::ATTN_Q_BIAS || role == LlamaTensorRole::ATTN_K_BIAS ||
         role == LlamaTensorRole::ATTN_V_BIAS;
}

LlamaConfig LlamaConfig::from_gguf(const GgufFile& file) {
  const std::string arch_name = file.get_string("general.architecture");
  const std::optional<LlamaArch> arch = parse_llama_arch(arch_name);
  if (!arch)
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": architecture '" + arch_name + "' is not supported (ferry runs " +
                                         llama_arch_names() +
                                         ": Llama 1/2/3, Mistral, TinyLlama, SmolLM, Qwen2/2.5, Qwen3)");
  // Every hyper-parameter key starts with the architecture's name: "qwen2.block_count".
  const std::string k = arch_name + ".";
  LlamaConfig c;
  c.arch = *arch;
  c.n_layer = positive_key(file, k + "block_count");
  c.n_embd = positive_key(file, k + "embedding_length");
  c.n_ff = positive_key(file, k + "feed_forward_length");
  c.n_head = positive_key(file, k + "attention.head_count");
  c.n_head_kv = file.find(k + "attention.head_count_kv") ? positive_key(file, k + "attention.head_count_kv") : c.n_head;
  c.n_ctx_train = positive_key(file, k + "context_length");
  c.rms_eps = file.get<float>(k + "attention.layer_norm_rms_epsilon");
  c.rope_freq_base = file.get_optional<float>(k + "rope.freq_base").value_or(10000.0f);
  if (file.find(k + "attention.key_length")) {
    c.n_head_dim = positive_key(file, k + "attention.key_length");
    if (file.find(k + "attention.value_length") && positive_key(file, k + "attention.value_length") != c.n_head_dim)
      fail(ErrorCategory::UNSUPPORTED, file.name() + ": " + k + "attention.value_length differs from " + k +
                                           "attention.key_length (heads of two sizes are not supported)");
  } else if (c.n_embd % c.n_head != 0) {
    fail(ErrorCategory::FORMAT, file.name() + ": " + k + "embedding_length " + std::to_string(c.n_embd) +
                                    " is not divisible by " + k + "attention.head_count " + std::to_string(c.n_head));
  }
  if (c.n_head % c.n_head_kv != 0)
    fail(ErrorCategory::FORMAT, file.name() + ": " + k + "attention.head_count " + std::to_string(c.n_head) +
                                    " is not a multiple of " + k + "attention.head_count_kv " +
                                    std::to_string(c.n_head_kv));
  c.n_rot = file.find(k + "rope.dimension_count") ? positive_key(file, k + "rope.dimension_count") : c.head_dim();
  if (c.n_rot != c.head_dim())
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": " + k + "rope.dimension_count " + std::to_string(c.n_rot) +
                                         " differs from the head dimension " + std::to_string(c.head_dim()) +
                                         " (partial rotary embeddings are not supported)");
  if (c.head_dim() % 2 != 0)
    fail(ErrorCategory::FORMAT, file.name() + ": head dimension " + std::to_string(c.head_dim()) + " is odd");
  if (!(c.rms_eps > 0.0f) || !(c.rope_freq_base > 0.0f))
    fail(ErrorCategory::FORMAT,
         file.name() + ": " + k + "attention.layer_norm_rms_epsilon and " + k + "rope.freq_base must be positive");
  const GgufTensorInfo& embd = file.tensor("token_embd.weight");
  if (embd.ne.size() != 2)
    fail(ErrorCategory::FORMAT,
         file.name() + ": tensor 'token_embd.weight' has shape " + shape_string(embd.ne) + ", expected 2 dimensions");
  c.n_vocab = file.get_optional<int64_t>(k + "vocab_size").value_or(embd.ne[1]);
  return c;
}

LlamaWeights LlamaWeights::from_gguf(const GgufFile& file, const LlamaConfig& c) {
  LlamaWeights w;
  using R = LlamaTensorRole;
  w.token_embd = matrix(file, llama_tensor_name(R::TOKEN_EMBD), c.n_embd, c.n_vocab);
  w.output_norm = vector_weight(file, llama_tensor_name(R::OUTPUT_NORM), c.n_embd);
  if (file.find_tensor(llama_tensor_name(R::OUTPUT))) {
    w.output = matrix(file, llama_tensor_name(R::OUTPUT), c.n_embd, c.n_vocab);
  } else {
    w.output = w.token_embd;
    w.tied_output = true;
  }
  const int64_t q = c.n_embd_q(), kv = c.n_embd_kv();
  const LlamaArchTraits traits = c.traits();
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LlamaLayerWeights l;
    l.attn_norm = vector_weight(file, llama_tensor_name(R::ATTN_NORM, i), c.n_embd);
    l.wq = matrix(file, llama_tensor_name(R::ATTN_Q, i), c.n_embd, q);
    l.wk = matrix(file, llama_tensor_name(R::ATTN_K, i), c.n_embd, kv);
    l.wv = matrix(file, llama_tensor_name(R::ATTN_V, i), c.n_embd, kv);
    l.wo = matrix(file, llama_tensor_name(R::ATTN_OUTPUT, i), q, c.n_embd);
    l.ffn_norm = vector_weight(file, llama_tensor_name(R::FFN_NORM, i), c.n_embd);
    l.w_gate = matrix(file, llama_tensor_name(R::FFN_GATE, i), c.n_embd, c.n_ff);
    l.w_up = matrix(file, llama_tensor_name(R::FFN_UP, i), c.n_embd, c.n_ff);
    l.w_down = matrix(file, llama_tensor_name(R::FFN_DOWN, i), c.n_ff, c.n_embd);
    if (traits.qkv_bias) {
      l.bq = required_vector(file, c.arch, llama_tensor_name(R::ATTN_Q_BIAS, i), q);
      l.bk = required_vector(file, c.arch, llama_tensor_name(R::ATTN_K_BIAS, i), kv);
      l.bv = required_vector(file, c.arch, llama_tensor_name(R::ATTN_V_BIAS, i), kv);
    }
    if (traits.qk_norm) {
      l.q_norm = required_vector(file, c.arch, llama_tensor_name(R::ATTN_Q_NORM, i), c.head_dim());
      l.k_norm = required_vector(file, c.arch, llama_tensor_name(R::ATTN_K_NORM, i), c.head_dim());
    }
    w.layers.push_back(l);
  }
  return w;
}

uint64_t LlamaWeights::layer_bytes(const LlamaLayerWeights& l, const LlamaConfig& c) {
  const LlamaArchTraits traits = c.traits();
  uint64_t floats = 2 * static_cast<uint64_t>(c.n_embd);  // attn_norm, ffn_norm
  if (traits.qkv_bias) floats += static_cast<uint64_t>(c.n_embd_q() + 2 * c.n_embd_kv());
  if (traits.qk_norm) floats += 2 * static_cast<uint64_t>(c.head_dim());
  uint64_t total = floats * sizeof(float);
  for (const QuantMatrixView* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
    total += row_bytes(m->type, m->n_cols) * static_cast<uint64_t>(m->n_rows);
  return total;
}

}  // namespace ferry
