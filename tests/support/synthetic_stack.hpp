// A synthetic stack of quantized layers for testing and benchmarking the offload engine apart from any model family
// (tests and bench_offload): each layer is
//     x <- x + W2 · gelu_tanh(W1 · rms_norm(x) ⊙ g)        W1: [ffn, width], W2: [width, ffn], g: [width] F32
// with real widths (Llama-2-13B 5120/13824, Flux 3072/12288) and real quant types, so the bytes moved per layer and
// the FLOPs per token are those of one real FFN. Weights are deterministic from the seed: every row draws from its own
// counter-based generator (so generation runs in parallel and the result does not depend on the thread count) and is
// quantized by ferry::ref::quantize.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ferry/ggml_type.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry {

struct SyntheticStackConfig {
  std::string name_prefix = "blk";
  int64_t n_layers = 4;
  int64_t width = 5120;
  int64_t ffn = 13824;
  GgmlType type = GgmlType::Q4_0;  // of W1 and W2; any quantizable type whose block size divides width and ffn
  uint64_t seed = 1;
  float rms_eps = 1e-5f;
};

// Llama-2-13B's width and FFN (5120, 13824) and Flux.1's (3072, 12288).
SyntheticStackConfig llama_13b_synthetic(int64_t n_layers, GgmlType type, uint64_t seed);
SyntheticStackConfig flux_synthetic(int64_t n_layers, GgmlType type, uint64_t seed);

class SyntheticLayer final : public Layer {
 public:
  SyntheticLayer(const SyntheticStackConfig& config, int64_t index);

  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_width; }
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;

  // Tensor order in weights(): norm g, W1, W2.
  static constexpr size_t kNorm = 0, kW1 = 1, kW2 = 2;

 private:
  std::string m_name;
  int64_t m_width;
  int64_t m_ffn;
  float m_eps;
  std::vector<std::unique_ptr<std::byte[]>> m_storage;  // the host bytes (what a mapped file would hold)
  std::vector<WeightTensor> m_tensors;
};

class SyntheticStack {
 public:
  explicit SyntheticStack(const SyntheticStackConfig& config);

  const SyntheticStackConfig& config() const noexcept { return m_config; }
  size_t size() const noexcept { return m_layers.size(); }
  const SyntheticLayer& layer(size_t i) const { return *m_layers.at(i); }
  std::vector<const Layer*> layers() const;
  uint64_t weight_bytes() const;  // quantized bytes of all tensors, unaligned
  // Deterministic input activations [n_tokens, width] in [-1, 1).
  std::vector<float> make_input(int64_t n_tokens, uint64_t seed) const;

 private:
  SyntheticStackConfig m_config;
  std::vector<std::unique_ptr<SyntheticLayer>> m_layers;
};

}  // namespace ferry
