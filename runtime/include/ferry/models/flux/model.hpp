// The `flux` architecture (Flux.1-dev, Flux.1-schnell) as ComfyUI-format GGUF files hold it: the hyper-parameters,
// read from the tensors' shapes (those files carry no hyper-parameter keys), the tensor names (the one place they are
// spelled) and views of every weight with its shape checked. The computation is block.hpp; where it runs is the
// scheduler's business.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/kernels/matrix.hpp"

namespace ferry {

class GgufFile;

struct FluxConfig {
  int64_t hidden = 0;             // 3072
  int64_t n_head = 0;             // 24
  int64_t head_dim = 0;           // 128
  int64_t mlp_hidden = 0;         // 12288
  int64_t n_double = 0;           // double-stream blocks: 19
  int64_t n_single = 0;           // single-stream blocks: 38
  int64_t in_channels = 0;        // 64: a 2x2 patch of the 16-channel VAE latent
  int64_t context_in_dim = 0;     // 4096: T5-XXL embeddings
  int64_t vec_in_dim = 0;         // 768: pooled CLIP-L embedding
  int64_t timestep_dim = 256;     // sinusoidal embedding width of the timestep (and of the guidance)
  bool has_guidance = false;      // guidance_in present (dev); schnell has none
  std::vector<int32_t> axes_dim;  // RoPE axes, summing to head_dim: 16, 56, 56
  float theta = 10000.0f;
  float eps = 1e-6f;  // LayerNorm and the q/k RMSNorm

  // The output of the final layer per image token.
  int64_t out_channels() const noexcept { return in_channels; }

  // Refuses any general.architecture but "flux" (UNSUPPORTED); reads the sizes from the tensors' shapes and the
  // optional keys flux.rope.axes_dim / flux.rope.freq_base (the published 16/56/56 and 10000 when absent); FORMAT
  // naming the tensor for a missing one or a shape that does not describe a Flux model.
  static FluxConfig from_gguf(const GgufFile& file);
  // INVALID_ARGUMENT naming the field for sizes that cannot describe a Flux model (the checks from_gguf applies).
  void validate(std::string_view what) const;
};

// The tensor names. A linear has "<name>.weight" ([in, out] in ne order) and "<name>.bias" ([out], F32); the q/k
// norms have "<name>.scale" ([head_dim], F32).
enum class FluxStream { IMG, TXT };
// "double_blocks.3.img_attn.qkv": part is one of "mod.lin", "attn.qkv", "attn.proj", "mlp.0", "mlp.2",
// "attn.norm.query_norm", "attn.norm.key_norm".
std::string flux_double_name(int64_t block, FluxStream stream, std::string_view part);
// "single_blocks.7.linear1": part is one of "linear1", "linear2", "modulation.lin", "norm.query_norm",
// "norm.key_norm".
std::string flux_single_name(int64_t block, std::string_view part);

// One linear layer: weight [out rows, in cols] and its F32 bias [out].
struct FluxLinear {
  QuantMatrixView weight;
  const float* bias;
};

// The img or txt half of a double block.
struct FluxStreamWeights {
  FluxLinear mod;   // [6 * hidden]: shift, scale, gate of the attention, then of the MLP
  FluxLinear qkv;   // [3 * hidden]: q, k, v, each heads x head_dim
  FluxLinear proj;  // attention output
  FluxLinear mlp0, mlp2;
  const float* q_scale;  // [head_dim]
  const float* k_scale;
};

struct FluxDoubleWeights {
  FluxStreamWeights img, txt;
};

struct FluxSingleWeights {
  FluxLinear linear1;     // [3 * hidden + mlp_hidden]: q, k, v, then the MLP input
  FluxLinear linear2;     // [hidden] from [attention | gelu(mlp)] (hidden + mlp_hidden wide)
  FluxLinear modulation;  // [3 * hidden]: shift, scale, gate
  const float* q_scale;
  const float* k_scale;
};

// linear -> SiLU -> linear.
struct FluxMlpEmbedder {
  FluxLinear in_layer, out_layer;
};

struct FluxWeights {
  FluxLinear img_in;  // [hidden] from in_channels
  FluxLinear txt_in;  // [hidden] from context_in_dim
  FluxMlpEmbedder time_in, vector_in;
  FluxMlpEmbedder guidance_in{};  // null views when !has_guidance
  std::vector<FluxDoubleWeights> double_blocks;
  std::vector<FluxSingleWeights> single_blocks;
  FluxLinear final_mod;     // final_layer.adaLN_modulation.1: [2 * hidden]: shift, then scale
  FluxLinear final_linear;  // [in_channels]

  // Views into the file's mapping (valid while `file` lives); null data for a header-only file. FORMAT naming the
  // file, the tensor and the expected shape for a missing or misshapen tensor; UNSUPPORTED for a type ferry cannot
  // compute with (or a bias/scale that is not F32).
  static FluxWeights from_gguf(const GgufFile& file, const FluxConfig& config);
};

// Where a tensor sits in a Flux file and how a ComfyUI-style quantizer types it.
enum class FluxTensorKind {
  BLOCK_MATRIX,  // a 2-D weight inside double_blocks / single_blocks: quantized
  OUTER_MATRIX,  // img_in, txt_in, time_in, vector_in, guidance_in, final_layer: kept 16-bit
  VECTOR,        // biases and norm scales: F32
};
struct FluxTensorSpec {
  std::string name;
  std::vector<int64_t> ne;  // GGML order: [in, out] for a weight
  FluxTensorKind kind;
  int64_t block = -1;  // the block's index among double (then single) blocks; -1 outside them
  bool norm_scale = false;
};
// Every tensor of a model of this configuration, in file order (the embedders, the double blocks, the single blocks,
// the final layer).
std::vector<FluxTensorSpec> flux_tensor_specs(const FluxConfig& config);

}  // namespace ferry
