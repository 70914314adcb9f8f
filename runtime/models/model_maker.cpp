#include "ferry/models/model_maker.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <string>
#include <vector>

#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf_value.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry {
namespace {

struct FileTypeInfo {
  ModelFileType type;
  std::string_view name;
  GgmlType base;
  uint32_t gguf_id;  // llama.cpp's LLAMA_FTYPE_* value, written as general.file_type
};

constexpr std::array kFileTypes = {
    FileTypeInfo{ModelFileType::F32, "f32", GgmlType::F32, 0},
    FileTypeInfo{ModelFileType::F16, "f16", GgmlType::F16, 1},
    FileTypeInfo{ModelFileType::BF16, "bf16", GgmlType::BF16, 32},
    FileTypeInfo{ModelFileType::Q4_0, "q4_0", GgmlType::Q4_0, 2},
    FileTypeInfo{ModelFileType::Q4_1, "q4_1", GgmlType::Q4_1, 3},
    FileTypeInfo{ModelFileType::Q5_0, "q5_0", GgmlType::Q5_0, 8},
    FileTypeInfo{ModelFileType::Q5_1, "q5_1", GgmlType::Q5_1, 9},
    FileTypeInfo{ModelFileType::Q8_0, "q8_0", GgmlType::Q8_0, 7},
    FileTypeInfo{ModelFileType::Q4_K, "q4_k", GgmlType::Q4_K, 14},
    FileTypeInfo{ModelFileType::Q5_K, "q5_k", GgmlType::Q5_K, 16},
    FileTypeInfo{ModelFileType::Q6_K, "q6_k", GgmlType::Q6_K, 18},
    FileTypeInfo{ModelFileType::Q4_K_M, "q4_k_m", GgmlType::Q4_K, 15},
};

constexpr std::array kAllFileTypes = {
    ModelFileType::F32,  ModelFileType::F16,  ModelFileType::BF16, ModelFileType::Q4_0,
    ModelFileType::Q4_1, ModelFileType::Q5_0, ModelFileType::Q5_1, ModelFileType::Q8_0,
    ModelFileType::Q4_K, ModelFileType::Q5_K, ModelFileType::Q6_K, ModelFileType::Q4_K_M,
};

const FileTypeInfo& info_of(ModelFileType type) noexcept {
  for (const auto& i : kFileTypes)
    if (i.type == type) return i;
  return kFileTypes[0];  // unreachable: every enum value is in the table
}

// Small noise on the norm weights: enough that a kernel reading the wrong norm element gives a visibly different
// result, small enough that the model behaves like one with unit norms.
constexpr float kNormStddev = 0.02f;
constexpr float kBiasStddev = 0.5f;  // biases (qwen2's q, k, v): half the spread of the outputs they are added to

// About this many elements per parallel task: large enough to amortise scheduling, small enough that a
// 4096 x 4096 tensor still splits into hundreds of tasks.
constexpr int64_t kElementsPerTask = 1 << 16;

// ---- counter-based Gaussian generator ----------------------------------------------------------------------------
// SplitMix64's finaliser: a bijective 64-bit mix whose outputs pass BigCrush when fed a counter. Keying every row
// separately is what makes the bytes independent of how rows are split among threads.
constexpr uint64_t mix64(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// FNV-1a over the tensor name: tensors get independent streams whatever their position in the file.
uint64_t name_hash(std::string_view name) noexcept {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t tensor_key(uint64_t seed, std::string_view name) noexcept {
  return mix64(mix64(seed + kGolden) ^ name_hash(name));
}

uint64_t row_key(uint64_t tensor, int64_t row) noexcept {
  return mix64(tensor + static_cast<uint64_t>(row + 1) * 0xd1b54a32d192ed03ULL);
}

// Box-Muller on 24-bit uniforms: u1 in (0, 1) (never 0, so the log is finite; tails reach 5.9 sigma), u2 in [0, 1).
// Float libm calls are deterministic for a given build, which is what "same seed, same bytes" needs.
void gaussian_row(uint64_t key, float mean, float stddev, std::span<float> out) noexcept {
  constexpr float kTwoPi = 6.28318530717958647692f;
  constexpr float kInv24 = 1.0f / 16777216.0f;
  const size_t n = out.size();
  for (size_t i = 0, pair = 1; i < n; i += 2, ++pair) {
    const uint64_t bits = mix64(key + pair * kGolden);
    const float u1 = (static_cast<float>(bits >> 40) + 0.5f) * kInv24;
    const float u2 = static_cast<float>(bits & 0xffffffu) * kInv24;
    const float r = stddev * std::sqrt(-2.0f * std::log(u1));
    const float theta = kTwoPi * u2;
    out[i] = mean + r * std::cos(theta);
    if (i + 1 < n) out[i + 1] = mean + r * std::sin(theta);
  }
}

// llama.cpp's replacement when a k-quant's 256-element block does not divide the row.
GgmlType k_quant_fallback(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::Q4_K:
      return GgmlType::Q5_0;
    case GgmlType::Q5_K:
      return GgmlType::Q5_1;
    case GgmlType::Q6_K:
      return GgmlType::Q8_0;
    default:
      return GgmlType::F16;
  }
}

}  // namespace

// ---- file types --------------------------------------------------------------------------------------------------

std::span<const ModelFileType> all_model_file_types() noexcept { return kAllFileTypes; }

std::string_view model_file_type_name(ModelFileType type) noexcept { return info_of(type).name; }

std::optional<ModelFileType> parse_model_file_type(std::string_view name) noexcept {
  for (const auto& i : kFileTypes) {
    if (i.name.size() != name.size()) continue;
    bool same = true;
    for (size_t k = 0; k < name.size() && same; ++k)
      same = std::tolower(static_cast<unsigned char>(name[k])) == i.name[k];
    if (same) return i.type;
  }
  return std::nullopt;
}

std::string model_file_type_names() {
  std::string out;
  for (const auto& i : kFileTypes) {
    if (!out.empty()) out += ", ";
    out += i.name;
  }
  return out;
}

uint32_t gguf_file_type_id(ModelFileType type) noexcept { return info_of(type).gguf_id; }

GgmlType base_ggml_type(ModelFileType type) noexcept { return info_of(type).base; }

// ---- tensor plan -------------------------------------------------------------------------------------------------

bool llama_uses_more_bits(int64_t layer, int64_t n_layer) noexcept {
  return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

GgmlType llama_tensor_type(ModelFileType file_type, LlamaTensorRole role, int64_t layer, int64_t n_layer, int64_t ne0) {
  if (llama_role_is_vector(role)) return GgmlType::F32;
  GgmlType type = base_ggml_type(file_type);
  if (file_type == ModelFileType::Q4_K_M) {
    const bool wider =
        role == LlamaTensorRole::OUTPUT || ((role == LlamaTensorRole::ATTN_V || role == LlamaTensorRole::FFN_DOWN) &&
                                            llama_uses_more_bits(layer, n_layer));
    if (wider) type = GgmlType::Q6_K;
  }
  return type_for_row(type, ne0);
}

GgmlType type_for_row(GgmlType type, int64_t ne0) noexcept {
  if (ne0 % type_traits(type).block_size != 0) type = k_quant_fallback(type);
  if (ne0 % type_traits(type).block_size != 0) type = GgmlType::F16;
  return type;
}

int64_t SyntheticTensor::n_elements() const noexcept {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

uint64_t SyntheticTensor::n_bytes() const {
  const uint64_t rows = static_cast<uint64_t>(n_elements() / ne.at(0));
  const auto bytes = checked_mul(rows, row_bytes(type, ne[0]));
  if (!bytes) fail(ErrorCategory::INVALID_ARGUMENT, "tensor '" + name + "': byte size overflows 64 bits");
  return *bytes;
}

std::vector<SyntheticTensor> plan_llama_tensors(const LlamaShape& shape, ModelFileType file_type) {
  shape.validate();
  std::vector<SyntheticTensor> out;
  out.reserve(static_cast<size_t>(shape.n_layer) * 14 + 3);
  auto add = [&](LlamaTensorRole role, int64_t layer, std::vector<int64_t> ne) {
    SyntheticTensor t;
    t.name = llama_tensor_name(role, layer);
    t.role = role;
    t.layer = layer;
    t.type = llama_tensor_type(file_type, role, layer, shape.n_layer, ne[0]);
    if (llama_role_is_norm(role)) {
      t.mean = 1.0f;
      t.stddev = kNormStddev;
    } else if (llama_role_is_vector(role)) {  // a bias: of the order of the matmul's outputs, so it matters
      t.mean = 0.0f;
      t.stddev = kBiasStddev;
    } else if (role == LlamaTensorRole::TOKEN_EMBD) {
      t.mean = 0.0f;
      t.stddev = 1.0f;  // looked up, not multiplied: each row is the residual stream's starting value
    } else {
      t.mean = 0.0f;
      t.stddev = 1.0f / std::sqrt(static_cast<float>(ne[0]));  // unit-variance inputs give unit-variance outputs
    }
    t.ne = std::move(ne);
    out.push_back(std::move(t));
  };
  using R = LlamaTensorRole;
  const int64_t embd = shape.n_embd, q = shape.n_embd_q(), kv = shape.n_embd_kv(), ff = shape.n_ff;
  const LlamaArchTraits traits = llama_arch_traits(shape.arch);
  add(R::TOKEN_EMBD, -1, {embd, shape.n_vocab});
  for (int64_t l = 0; l < shape.n_layer; ++l) {
    add(R::ATTN_NORM, l, {embd});
    add(R::ATTN_Q, l, {embd, q});
    if (traits.qkv_bias) add(R::ATTN_Q_BIAS, l, {q});
    add(R::ATTN_K, l, {embd, kv});
    if (traits.qkv_bias) add(R::ATTN_K_BIAS, l, {kv});
    add(R::ATTN_V, l, {embd, kv});
    if (traits.qkv_bias) add(R::ATTN_V_BIAS, l, {kv});
    if (traits.qk_norm) {
      add(R::ATTN_Q_NORM, l, {shape.head_dim()});
      add(R::ATTN_K_NORM, l, {shape.head_dim()});
    }
    add(R::ATTN_OUTPUT, l, {q, embd});
    add(R::FFN_NORM, l, {embd});
    add(R::FFN_GATE, l, {embd, ff});
    add(R::FFN_UP, l, {embd, ff});
    add(R::FFN_DOWN, l, {ff, embd});
  }
  add(R::OUTPUT_NORM, -1, {embd});
  add(R::OUTPUT, -1, {embd, shape.n_vocab});
  return out;
}

// ---- data --------------------------------------------------------------------------------------------------------

void fill_synthetic_tensor(const SyntheticTensor& tensor, uint64_t seed, std::span<std::byte> out) {
  const uint64_t expected = tensor.n_bytes();
  if (out.size() != expected)
    fail(ErrorCategory::INVALID_ARGUMENT, "tensor '" + tensor.name + "': fill buffer has " +
                                              std::to_string(out.size()) + " bytes, expected " +
                                              std::to_string(expected));
  const int64_t ne0 = tensor.ne[0];
  const int64_t rows = tensor.n_elements() / ne0;
  const uint64_t row_size = row_bytes(tensor.type, ne0);
  const uint64_t key = tensor_key(seed, tensor.name);
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / ne0);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, grain), [&](const tbb::blocked_range<int64_t>& range) {
    std::vector<float> values(static_cast<size_t>(ne0));
    for (int64_t r = range.begin(); r != range.end(); ++r) {
      gaussian_row(row_key(key, r), tensor.mean, tensor.stddev, values);
      ref::quantize(tensor.type, values.data(), out.data() + static_cast<uint64_t>(r) * row_size, ne0);
    }
  });
}

// ---- the model ---------------------------------------------------------------------------------------------------

void set_general_metadata(GgufWriter& w, std::string_view arch, std::string_view preset,
                          const MakeModelOptions& options) {
  w.set("general.architecture", GgufValue::string(std::string(arch)));
  w.set("general.name", GgufValue::string(options.name.empty() ? "synthetic " + std::string(preset) : options.name));
  w.set("general.file_type", GgufValue::scalar(gguf_file_type_id(options.type)));
  w.set("general.quantization_version", GgufValue::scalar(uint32_t{2}));  // the current ggml block layouts
}

void add_synthetic_tensors(GgufWriter& w, std::vector<SyntheticTensor> tensors, uint64_t seed) {
  for (SyntheticTensor& t : tensors) {
    std::string name = t.name;
    const GgmlType type = t.type;
    std::vector<int64_t> ne = t.ne;
    w.add_tensor(std::move(name), type, std::move(ne),
                 [tensor = std::move(t), seed](std::span<std::byte> out) { fill_synthetic_tensor(tensor, seed, out); });
  }
}

GgufWriter make_llama_model(const LlamaShape& shape, const MakeModelOptions& options) {
  std::vector<SyntheticTensor> tensors = plan_llama_tensors(shape, options.type);
  GgufWriter w(options.alignment);
  auto u32 = [](int64_t v) { return GgufValue::scalar(static_cast<uint32_t>(v)); };

  const std::string arch(llama_arch_name(shape.arch));
  set_general_metadata(w, arch, shape.name, options);

  w.set(arch + ".vocab_size", u32(shape.n_vocab));
  w.set(arch + ".context_length", u32(shape.n_ctx_train));
  w.set(arch + ".embedding_length", u32(shape.n_embd));
  w.set(arch + ".block_count", u32(shape.n_layer));
  w.set(arch + ".feed_forward_length", u32(shape.n_ff));
  w.set(arch + ".rope.dimension_count", u32(shape.head_dim()));
  w.set(arch + ".attention.head_count", u32(shape.n_head));
  w.set(arch + ".attention.head_count_kv", u32(shape.n_head_kv));
  w.set(arch + ".attention.layer_norm_rms_epsilon", GgufValue::scalar(shape.rms_eps));
  w.set(arch + ".rope.freq_base", GgufValue::scalar(shape.rope_freq_base));

  if (shape.n_head_dim > 0) {
    w.set(arch + ".attention.key_length", u32(shape.n_head_dim));
    w.set(arch + ".attention.value_length", u32(shape.n_head_dim));
  }

  SyntheticVocab vocab = make_llama_vocab(shape.n_vocab);
  w.set("tokenizer.ggml.model", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(std::move(vocab.tokens)));
  w.set("tokenizer.ggml.scores", GgufValue::array(vocab.scores));
  w.set("tokenizer.ggml.token_type", GgufValue::array(vocab.token_types));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::scalar(SyntheticVocab::kBosId));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::scalar(SyntheticVocab::kEosId));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::scalar(SyntheticVocab::kUnkId));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::scalar(true));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::scalar(false));

  add_synthetic_tensors(w, std::move(tensors), options.seed);
  return w;
}

void write_llama_model(const LlamaShape& shape, const MakeModelOptions& options, const std::filesystem::path& path,
                       const GgufWriter::Progress& progress) {
  make_llama_model(shape, options).write(path, progress);
}

}  // namespace ferry
