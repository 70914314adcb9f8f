// Synthetic llama models with exact real shapes: every benchmark and the built-in default model use them, so any
// real model's memory and movement behaviour can be reproduced without downloading weights.
//
// What a synthetic file holds:
// - the metadata a GGUF file of its architecture has (general.*, llama.* or qwen2.* ..., a SentencePiece-style
//   tokenizer.ggml.* vocabulary);
// - every llama tensor with its real name, shape (ne = [in, out]) and a type chosen like a real quantized file's;
// - Gaussian weights scaled so activations stay O(1) through any number of layers: a matmul weight has std
//   1/sqrt(fan_in) (fan_in = ne[0]), the embedding has std 1 (a lookup: its rows start the residual stream), norms
//   are 1 with small noise. Values are drawn in float32 and then quantized with ferry::ref::quantize.
//
// Determinism: each row's values come from a counter-based generator keyed by (seed, tensor name, row index), so the
// bytes depend on the seed only — not on thread count, scheduling or tensor order. Generation is parallel over rows
// (oneTBB) and streamed through GgufWriter's fill callback: memory holds one tensor at most, never the model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/ggml_type.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/model_presets.hpp"

namespace ferry {

// The `--type` of a synthetic file: one GGML type for every weight, or Q4_K_M, the llama.cpp-style mixture.
enum class ModelFileType { F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, Q4_K_M };

std::span<const ModelFileType> all_model_file_types() noexcept;
// Lower case as on the command line: "q4_k_m".
std::string_view model_file_type_name(ModelFileType type) noexcept;
// Case-insensitive; nullopt for anything else.
std::optional<ModelFileType> parse_model_file_type(std::string_view name) noexcept;
// "f32, f16, ..., q4_k_m" for messages and help text.
std::string model_file_type_names();
// The value of general.file_type (llama.cpp's file type enum). Single-type k-quant files are labelled with the
// nearest "_S" mixture id (Q4_K -> 14 MOSTLY_Q4_K_S, Q5_K -> 16 MOSTLY_Q5_K_S); Q6_K is 18.
uint32_t gguf_file_type_id(ModelFileType type) noexcept;
// The type most weights get (Q4_K for Q4_K_M).
GgmlType base_ggml_type(ModelFileType type) noexcept;

// The GGML type of one tensor in a file of `file_type`:
// - norms and biases are F32;
// - Q4_K_M: output.weight is Q6_K, and attn_v / ffn_down are Q6_K in layers where llama.cpp spends more bits (the
//   first and last eighth of the layers and every third layer in between), Q4_K elsewhere;
// - a k-quant whose 256-element block does not divide ne0 falls back as llama.cpp's quantizer does: Q4_K -> Q5_0,
//   Q5_K -> Q5_1, Q6_K -> Q8_0 (and a 32-element type that does not divide ne0 falls back to F16).
GgmlType llama_tensor_type(ModelFileType file_type, LlamaTensorRole role, int64_t layer, int64_t n_layer, int64_t ne0);
// The type a quantizer gives a row of ne0 elements asked to be `type`: `type`, or llama.cpp's replacement when the
// type's block does not divide the row (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16).
GgmlType type_for_row(GgmlType type, int64_t ne0) noexcept;
// Whether llama.cpp's Q4_K_M gives layer `layer` of `n_layer` the larger type for attn_v and ffn_down.
bool llama_uses_more_bits(int64_t layer, int64_t n_layer) noexcept;

// One tensor of a synthetic file, of any family (llama here, flux in ferry/models/flux/maker.hpp).
struct SyntheticTensor {
  std::string name;                     // GGUF name: "blk.3.attn_q.weight", "double_blocks.0.img_attn.qkv.weight"
  std::optional<LlamaTensorRole> role;  // llama files only
  int64_t layer;                        // -1 outside the blocks
  GgmlType type;
  std::vector<int64_t> ne;
  float mean;    // of the float32 values before quantization
  float stddev;  // idem
  int64_t n_elements() const noexcept;
  uint64_t n_bytes() const;
};

// Every tensor of the model, in file order: token_embd, then each block's tensors, then output_norm and output.
// Validates the shape first (LlamaShape::validate).
std::vector<SyntheticTensor> plan_llama_tensors(const LlamaShape& shape, ModelFileType file_type);

// A small valid SentencePiece-style vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then printable
// pieces (single characters, then common English words and subwords marked with U+2581 for a leading space, each
// with all its prefixes so the merge path to it exists), then unique generated pieces ("▁tok12345") up to n_vocab.
// Scores decrease with the index, as SentencePiece's do.
struct SyntheticVocab {
  static constexpr int32_t kNormal = 1;
  static constexpr int32_t kUnknown = 2;
  static constexpr int32_t kControl = 3;
  static constexpr int32_t kByte = 6;
  static constexpr uint32_t kUnkId = 0;
  static constexpr uint32_t kBosId = 1;
  static constexpr uint32_t kEosId = 2;
  static constexpr int64_t kFirstPieceId = 259;  // after 3 special and 256 byte tokens

  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> token_types;
};
// Throws INVALID_ARGUMENT when n_vocab < 259.
SyntheticVocab make_llama_vocab(int64_t n_vocab);

// Writes the tensor's values into `out` (exactly tensor.n_bytes()), in parallel over rows. Throws INVALID_ARGUMENT
// when out has the wrong size.
void fill_synthetic_tensor(const SyntheticTensor& tensor, uint64_t seed, std::span<std::byte> out);

struct MakeModelOptions {
  ModelFileType type = ModelFileType::Q4_0;
  uint64_t seed = 0;
  uint64_t alignment = 32;  // a power of two; other than 32 it is written as general.alignment
  std::string name;         // general.name; empty: "synthetic <preset>"
};

// The general.* keys every synthetic file has (architecture, name: options.name or "synthetic PRESET", file type,
// quantization version).
void set_general_metadata(GgufWriter& w, std::string_view arch, std::string_view preset,
                          const MakeModelOptions& options);
// Adds the tensors with fill callbacks that generate their data (fill_synthetic_tensor) when the writer writes.
void add_synthetic_tensors(GgufWriter& w, std::vector<SyntheticTensor> tensors, uint64_t seed);

// A writer holding the complete model (metadata and tensor fill callbacks); nothing is generated until write().
GgufWriter make_llama_model(const LlamaShape& shape, const MakeModelOptions& options);

// make_llama_model(...).write(path, progress).
void write_llama_model(const LlamaShape& shape, const MakeModelOptions& options, const std::filesystem::path& path,
                       const GgufWriter::Progress& progress = {});

}  // namespace ferry
