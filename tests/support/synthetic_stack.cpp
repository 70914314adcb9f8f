#include "support/synthetic_stack.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <cmath>
#include <cstring>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1) from the top 24 bits.
float uniform(uint64_t& state) { return static_cast<float>(splitmix64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f; }

uint64_t row_seed(uint64_t seed, int64_t layer, int64_t tensor, int64_t row) {
  uint64_t s = seed ^ 0x6a09e667f3bcc909ull;
  splitmix64(s);
  s ^= static_cast<uint64_t>(layer) * 0x9e3779b97f4a7c15ull;
  splitmix64(s);
  s ^= static_cast<uint64_t>(tensor) * 0xc2b2ae3d27d4eb4full;
  splitmix64(s);
  s ^= static_cast<uint64_t>(row);
  splitmix64(s);
  return s;
}

// Weight-like values: roughly Gaussian (a sum of four uniforms, unit variance) with one outlier in a thousand at 8x,
// scaled by sigma; quantizers must handle both.
void fill_row(float* row, int64_t n, uint64_t state, float sigma) {
  constexpr float kUnitVariance = 0.8660254f;  // sqrt(3/4): four uniforms on [-1, 1) have variance 4/3
  for (int64_t i = 0; i < n; ++i) {
    const float g = (uniform(state) + uniform(state) + uniform(state) + uniform(state)) * kUnitVariance;
    const bool outlier = (splitmix64(state) % 1000) == 0;
    row[i] = g * sigma * (outlier ? 8.0f : 1.0f);
  }
}

void check_config(const SyntheticStackConfig& c) {
  const TypeTraits& traits = type_traits(c.type);
  if (!traits.quantizable)
    fail(ErrorCategory::UNSUPPORTED, "synthetic stack: type " + std::string(traits.name) + " cannot be quantized");
  if (c.n_layers < 1 || c.width < 1 || c.ffn < 1 || c.width % traits.block_size != 0 || c.ffn % traits.block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "synthetic stack: " + std::to_string(c.n_layers) + " layers of width " +
                                              std::to_string(c.width) + " and FFN " + std::to_string(c.ffn) +
                                              ": need at least one layer and widths that are positive multiples of " +
                                              std::string(traits.name) + "'s block size " +
                                              std::to_string(traits.block_size));
}

}  // namespace

SyntheticStackConfig llama_13b_synthetic(int64_t n_layers, GgmlType type, uint64_t seed) {
  return SyntheticStackConfig{"llama13b.blk", n_layers, 5120, 13824, type, seed, 1e-5f};
}

SyntheticStackConfig flux_synthetic(int64_t n_layers, GgmlType type, uint64_t seed) {
  return SyntheticStackConfig{"flux.blk", n_layers, 3072, 12288, type, seed, 1e-6f};
}

SyntheticLayer::SyntheticLayer(const SyntheticStackConfig& config, int64_t index)
    : m_name(config.name_prefix + "." + std::to_string(index)),
      m_width(config.width),
      m_ffn(config.ffn),
      m_eps(config.rms_eps) {
  struct Spec {
    const char* suffix;
    GgmlType type;
    int64_t n_rows, n_cols;
    float sigma;
  };
  // W1 keeps the norm's unit scale; W2 scales the branch down so the residual grows slowly over many layers.
  const Spec specs[] = {
      {".norm.weight", GgmlType::F32, 1, m_width, 0.0f},
      {".ffn_up.weight", config.type, m_ffn, m_width, 1.0f / std::sqrt(static_cast<float>(m_width))},
      {".ffn_down.weight", config.type, m_width, m_ffn, 0.5f / std::sqrt(static_cast<float>(m_ffn))},
  };
  for (size_t t = 0; t < std::size(specs); ++t) {
    const Spec& s = specs[t];
    const QuantMatrixView shape{s.type, nullptr, s.n_cols, s.n_rows};
    const uint64_t bytes = tensor_bytes(shape);
    const uint64_t bytes_per_row = row_bytes(s.type, s.n_cols);
    auto storage = std::unique_ptr<std::byte[]>(new std::byte[bytes]);
    std::byte* dst = storage.get();
    if (s.type == GgmlType::F32) {
      uint64_t state = row_seed(config.seed, index, static_cast<int64_t>(t), 0);
      auto* g = reinterpret_cast<float*>(dst);
      for (int64_t i = 0; i < s.n_cols; ++i) g[i] = 1.0f + 0.25f * uniform(state);
    } else {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, s.n_rows, 16), [&](const tbb::blocked_range<int64_t>& r) {
        std::vector<float> row(static_cast<size_t>(s.n_cols));
        for (int64_t i = r.begin(); i != r.end(); ++i) {
          fill_row(row.data(), s.n_cols, row_seed(config.seed, index, static_cast<int64_t>(t), i), s.sigma);
          ref::quantize(s.type, row.data(), dst + static_cast<uint64_t>(i) * bytes_per_row, s.n_cols);
        }
      });
    }
    m_tensors.push_back({m_name + s.suffix, QuantMatrixView{s.type, dst, s.n_cols, s.n_rows}});
    m_storage.push_back(std::move(storage));
  }
}

size_t SyntheticLayer::workspace_floats(int64_t n_tokens, Device /*device*/) const {
  // h = rms_norm(x) (reused for W2's output) and u = W1 h.
  return static_cast<size_t>(n_tokens) * static_cast<size_t>(m_width + m_ffn);
}

void SyntheticLayer::forward(std::span<const QuantMatrixView> w, float* x, const StepContext& step,
                             const LayerRun& run) const {
  check_layer_call(*this, w, step, run);
  Ops& ops = *run.ops;
  const int64_t n_tokens = step.n_tokens;
  float* h = run.workspace;
  float* u = h + n_tokens * m_width;
  ops.rms_norm(x, static_cast<const float*>(w[kNorm].data), h, n_tokens, m_width, m_eps);
  ops.matmul(w[kW1], h, n_tokens, u);
  ops.gelu_tanh(u, u, n_tokens * m_ffn);
  ops.matmul(w[kW2], u, n_tokens, h);
  ops.add(x, h, x, n_tokens * m_width);
}

SyntheticStack::SyntheticStack(const SyntheticStackConfig& config) : m_config(config) {
  check_config(config);
  for (int64_t i = 0; i < config.n_layers; ++i) m_layers.push_back(std::make_unique<SyntheticLayer>(config, i));
}

std::vector<const Layer*> SyntheticStack::layers() const {
  std::vector<const Layer*> out;
  for (const auto& l : m_layers) out.push_back(l.get());
  return out;
}

uint64_t SyntheticStack::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& l : m_layers)
    for (const WeightTensor& t : l->weights()) total += tensor_bytes(t.view);
  return total;
}

std::vector<float> SyntheticStack::make_input(int64_t n_tokens, uint64_t seed) const {
  std::vector<float> x(static_cast<size_t>(n_tokens * m_config.width));
  uint64_t state = seed * 0x2545f4914f6cdd1dull + 17;
  for (float& v : x) v = uniform(state);
  return x;
}

}  // namespace ferry
