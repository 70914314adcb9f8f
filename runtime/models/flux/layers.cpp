#include "ferry/models/flux/layers.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "ferry/error.hpp"

namespace ferry {
namespace {

QuantMatrixView vector_view(const float* data, int64_t n) { return QuantMatrixView{GgmlType::F32, data, n, 1}; }

constexpr FluxStream kStreams[] = {FluxStream::IMG, FluxStream::TXT};

}  // namespace

// ---- step inputs -------------------------------------------------------------------------------------------------

size_t FluxStepInputs::floats(const FluxConfig& c, int64_t n_tokens) {
  return kHeader + static_cast<size_t>(c.hidden) + static_cast<size_t>(n_tokens) * c.axes_dim.size();
}

void FluxStepInputs::pack(const FluxConfig& c, int64_t n_txt, int64_t n_img, std::span<const float> silu_vec,
                          std::span<const float> positions, std::vector<float>& out) {
  const int64_t T = n_txt + n_img;
  if (silu_vec.size() != static_cast<size_t>(c.hidden) ||
      positions.size() != static_cast<size_t>(T) * c.axes_dim.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "flux step inputs: " + std::to_string(silu_vec.size()) +
                                              " conditioning floats and " + std::to_string(positions.size()) +
                                              " positions for " + std::to_string(T) + " tokens");
  out.assign(floats(c, T), 0.0f);
  out[0] = static_cast<float>(n_txt);  // exact: token counts are far below 2^24
  out[1] = static_cast<float>(n_img);
  std::copy(silu_vec.begin(), silu_vec.end(), out.begin() + kHeader);
  std::copy(positions.begin(), positions.end(), out.begin() + static_cast<std::ptrdiff_t>(kHeader + c.hidden));
}

FluxStepView FluxStepInputs::view(const FluxConfig& c, const StepContext& step, const float* on_device,
                                  const std::string& layer) {
  const std::span<const float> in = step.inputs;
  if (in.size() < kHeader || on_device == nullptr)
    fail(ErrorCategory::INTERNAL, "layer '" + layer + "': the step carries no Flux inputs (StepContext::inputs)");
  FluxStepView v;
  v.n_txt = static_cast<int64_t>(in[0]);
  v.n_img = static_cast<int64_t>(in[1]);
  if (v.n_txt + v.n_img != step.n_tokens || in.size() < floats(c, step.n_tokens))
    fail(ErrorCategory::INTERNAL, "layer '" + layer + "': step inputs for " + std::to_string(v.n_txt) + " + " +
                                      std::to_string(v.n_img) + " tokens in a step of " +
                                      std::to_string(step.n_tokens));
  v.silu_vec = on_device + kHeader;
  v.positions = on_device + kHeader + c.hidden;
  return v;
}

// ---- the layers --------------------------------------------------------------------------------------------------

void FluxLayer::add_linear(const std::string& name, const FluxLinear& l, Rows rows) {
  m_matmuls.emplace_back(m_tensors.size(), rows);
  m_tensors.push_back({name + ".weight", l.weight});
  m_tensors.push_back({name + ".bias", vector_view(l.bias, l.weight.n_rows)});
}

void FluxLayer::add_vector(const std::string& name, const float* data, int64_t n) {
  m_tensors.push_back({name, vector_view(data, n)});
}

std::vector<size_t> FluxLayer::matmul_weights() const {
  std::vector<size_t> out;
  for (const auto& [index, rows] : m_matmuls) out.push_back(index);
  return out;
}

std::vector<size_t> FluxLayer::vector_matmul_weights() const {
  std::vector<size_t> out;
  for (const auto& [index, rows] : m_matmuls)
    if (rows == Rows::ONE) out.push_back(index);
  return out;
}

std::vector<int64_t> FluxLayer::matmul_tokens(int64_t n_tokens) const {
  const int64_t txt = std::clamp<int64_t>(m_text_tokens, 0, std::max<int64_t>(n_tokens - 1, 0));
  std::vector<int64_t> out;
  for (const auto& [index, rows] : m_matmuls) {
    switch (rows) {
      case Rows::ALL:
        out.push_back(n_tokens);
        break;
      case Rows::IMG:
        out.push_back(n_tokens - txt);
        break;
      case Rows::TXT:
        out.push_back(txt);
        break;
      case Rows::ONE:
        out.push_back(1);
        break;
    }
  }
  return out;
}

FluxStepView FluxLayer::step_view(const StepContext& step, const LayerRun& run) const {
  return FluxStepInputs::view(m_config, step, run.inputs, m_name);
}

FluxLinear FluxLayer::Cursor::linear() {
  const QuantMatrixView weight = m_views[m_next++];
  return FluxLinear{weight, static_cast<const float*>(m_views[m_next++].data)};
}

FluxInputLayer::FluxInputLayer(const FluxConfig& config, const FluxWeights& w, int64_t text_tokens)
    : FluxLayer(config, "img_in", text_tokens) {
  add_linear("img_in", w.img_in, Rows::IMG);
}

size_t FluxInputLayer::workspace_floats(int64_t n_tokens, Device /*device*/) const {
  return static_cast<size_t>(n_tokens * m_config.in_channels);
}

void FluxInputLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                             const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  Cursor cursor(weights);
  flux_input_forward(*run.ops, m_config, cursor.linear(), step_view(step, run), x, run.workspace);
}

FluxDoubleLayer::FluxDoubleLayer(const FluxConfig& config, const FluxDoubleWeights& w, int64_t index,
                                 int64_t text_tokens)
    : FluxLayer(config, "double_blocks." + std::to_string(index), text_tokens) {
  for (FluxStream s : kStreams) {
    const FluxStreamWeights& sw = s == FluxStream::IMG ? w.img : w.txt;
    const Rows rows = s == FluxStream::IMG ? Rows::IMG : Rows::TXT;  // each stream's matrices on its own tokens
    auto name = [&](std::string_view part) { return flux_double_name(index, s, part); };
    add_linear(name("mod.lin"), sw.mod, Rows::ONE);
    add_linear(name("attn.qkv"), sw.qkv, rows);
    add_vector(name("attn.norm.query_norm.scale"), sw.q_scale, config.head_dim);
    add_vector(name("attn.norm.key_norm.scale"), sw.k_scale, config.head_dim);
    add_linear(name("attn.proj"), sw.proj, rows);
    add_linear(name("mlp.0"), sw.mlp0, rows);
    add_linear(name("mlp.2"), sw.mlp2, rows);
  }
}

size_t FluxDoubleLayer::workspace_floats(int64_t n_tokens, Device device) const {
  return FluxBlockBuffers::workspace_floats(m_config, n_tokens, device);
}

void FluxDoubleLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                              const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  Cursor cursor(weights);
  FluxDoubleWeights w{};
  for (FluxStream s : kStreams) {  // the order of the constructor
    FluxStreamWeights& sw = s == FluxStream::IMG ? w.img : w.txt;
    sw.mod = cursor.linear();
    sw.qkv = cursor.linear();
    sw.q_scale = cursor.vector();
    sw.k_scale = cursor.vector();
    sw.proj = cursor.linear();
    sw.mlp0 = cursor.linear();
    sw.mlp2 = cursor.linear();
  }
  const FluxBlockBuffers b = FluxBlockBuffers::carve(m_config, step.n_tokens, run.ops->device(), run.workspace);
  flux_double_block_forward(*run.ops, m_config, w, step_view(step, run), b, x);
}

FluxSingleLayer::FluxSingleLayer(const FluxConfig& config, const FluxSingleWeights& w, int64_t index,
                                 int64_t text_tokens)
    : FluxLayer(config, "single_blocks." + std::to_string(index), text_tokens) {
  add_linear(flux_single_name(index, "modulation.lin"), w.modulation, Rows::ONE);
  add_linear(flux_single_name(index, "linear1"), w.linear1, Rows::ALL);
  add_vector(flux_single_name(index, "norm.query_norm.scale"), w.q_scale, config.head_dim);
  add_vector(flux_single_name(index, "norm.key_norm.scale"), w.k_scale, config.head_dim);
  add_linear(flux_single_name(index, "linear2"), w.linear2, Rows::ALL);
}

size_t FluxSingleLayer::workspace_floats(int64_t n_tokens, Device device) const {
  return FluxBlockBuffers::workspace_floats(m_config, n_tokens, device);
}

void FluxSingleLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                              const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  Cursor cursor(weights);
  FluxSingleWeights w{};
  w.modulation = cursor.linear();
  w.linear1 = cursor.linear();
  w.q_scale = cursor.vector();
  w.k_scale = cursor.vector();
  w.linear2 = cursor.linear();
  const FluxBlockBuffers b = FluxBlockBuffers::carve(m_config, step.n_tokens, run.ops->device(), run.workspace);
  flux_single_block_forward(*run.ops, m_config, w, step_view(step, run), b, x);
}

FluxFinalLayer::FluxFinalLayer(const FluxConfig& config, const FluxWeights& w, int64_t text_tokens)
    : FluxLayer(config, "final_layer", text_tokens) {
  add_linear("final_layer.adaLN_modulation.1", w.final_mod, Rows::ONE);
  add_linear("final_layer.linear", w.final_linear, Rows::IMG);
}

size_t FluxFinalLayer::workspace_floats(int64_t n_tokens, Device /*device*/) const {
  return static_cast<size_t>((n_tokens + 2) * m_config.hidden);
}

void FluxFinalLayer::forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                             const LayerRun& run) const {
  check_layer_call(*this, weights, step, run);
  Cursor cursor(weights);
  const FluxLinear modulation = cursor.linear();
  const FluxLinear linear = cursor.linear();
  flux_final_forward(*run.ops, m_config, modulation, linear, step_view(step, run), x, run.workspace, run.output);
}

std::vector<std::unique_ptr<Layer>> make_flux_layers(const FluxConfig& config, const FluxWeights& weights,
                                                     int64_t text_tokens) {
  std::vector<std::unique_ptr<Layer>> layers;
  layers.push_back(std::make_unique<FluxInputLayer>(config, weights, text_tokens));
  for (int64_t i = 0; i < config.n_double; ++i)
    layers.push_back(std::make_unique<FluxDoubleLayer>(config, weights.double_blocks[i], i, text_tokens));
  for (int64_t i = 0; i < config.n_single; ++i)
    layers.push_back(std::make_unique<FluxSingleLayer>(config, weights.single_blocks[i], i, text_tokens));
  layers.push_back(std::make_unique<FluxFinalLayer>(config, weights, text_tokens));
  return layers;
}

}  // namespace ferry
