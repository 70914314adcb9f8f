#include "ferry/models/flux/maker.hpp"

#include <array>
#include <cmath>

#include "ferry/gguf_value.hpp"

namespace ferry {
namespace {

FluxConfig make_config(int64_t hidden, int64_t n_head, int64_t mlp_hidden, int64_t n_double, int64_t n_single,
                       int64_t context_in_dim, int64_t vec_in_dim, bool guidance, std::vector<int32_t> axes) {
  FluxConfig c;
  c.hidden = hidden;
  c.n_head = n_head;
  c.head_dim = hidden / n_head;
  c.mlp_hidden = mlp_hidden;
  c.n_double = n_double;
  c.n_single = n_single;
  c.in_channels = 64;
  c.context_in_dim = context_in_dim;
  c.vec_in_dim = vec_in_dim;
  c.has_guidance = guidance;
  c.axes_dim = std::move(axes);
  return c;
}

const std::array<FluxPreset, 5>& presets() {
  static const std::array<FluxPreset, 5> table = {
      FluxPreset{"flux-tiny", make_config(256, 4, 1024, 2, 2, 64, 32, true, {16, 24, 24})},
      FluxPreset{"flux-tiny-schnell", make_config(256, 4, 1024, 2, 2, 64, 32, false, {16, 24, 24})},
      // The built-in default of flux-step: Flux's head size and RoPE axes, a few MB.
      FluxPreset{"flux-small", make_config(512, 4, 2048, 2, 4, 256, 128, true, {16, 56, 56})},
      FluxPreset{"flux-1-dev", make_config(3072, 24, 12288, 19, 38, 4096, 768, true, {16, 56, 56})},
      FluxPreset{"flux-1-schnell", make_config(3072, 24, 12288, 19, 38, 4096, 768, false, {16, 56, 56})},
  };
  return table;
}

constexpr float kBiasStddev = 0.5f;
constexpr float kScaleStddev = 0.2f;
constexpr int64_t kSmallTensorElements = 1024;  // ComfyUI's quantizer keeps tensors this small in F32

}  // namespace

std::span<const FluxPreset> flux_presets() { return presets(); }

const FluxPreset* find_flux_preset(std::string_view name) noexcept {
  for (const FluxPreset& p : presets())
    if (p.name == name) return &p;
  return nullptr;
}

std::string flux_preset_names() {
  std::string out;
  for (const FluxPreset& p : presets()) out += (out.empty() ? "" : ", ") + std::string(p.name);
  return out;
}

GgmlType flux_tensor_type(ModelFileType file_type, const FluxTensorSpec& spec) {
  int64_t elements = 1;
  for (int64_t d : spec.ne) elements *= d;
  if (spec.kind == FluxTensorKind::VECTOR || elements <= kSmallTensorElements) return GgmlType::F32;
  if (spec.kind == FluxTensorKind::OUTER_MATRIX) return file_type == ModelFileType::F32 ? GgmlType::F32 : GgmlType::F16;
  return type_for_row(base_ggml_type(file_type), spec.ne[0]);
}

std::vector<SyntheticTensor> plan_flux_tensors(const FluxConfig& config, ModelFileType file_type) {
  config.validate("flux model");
  std::vector<SyntheticTensor> out;
  for (const FluxTensorSpec& spec : flux_tensor_specs(config)) {
    SyntheticTensor t;
    t.name = spec.name;
    t.layer = spec.block;
    t.type = flux_tensor_type(file_type, spec);
    t.ne = spec.ne;
    if (spec.norm_scale) {
      t.mean = 1.0f;
      t.stddev = kScaleStddev;
    } else if (spec.kind == FluxTensorKind::VECTOR) {
      t.mean = 0.0f;
      t.stddev = kBiasStddev;
    } else {
      t.mean = 0.0f;
      t.stddev = 1.0f / std::sqrt(static_cast<float>(spec.ne[0]));  // unit-variance inputs, unit-variance outputs
    }
    out.push_back(std::move(t));
  }
  return out;
}

uint64_t flux_tensor_bytes(const std::vector<SyntheticTensor>& tensors) {
  uint64_t total = 0;
  for (const SyntheticTensor& t : tensors) total += t.n_bytes();
  return total;
}

GgufWriter make_flux_model(const FluxConfig& config, std::string_view preset, const MakeModelOptions& options) {
  std::vector<SyntheticTensor> tensors = plan_flux_tensors(config, options.type);
  GgufWriter w(options.alignment);
  set_general_metadata(w, "flux", preset, options);
  w.set("flux.rope.axes_dim", GgufValue::array(config.axes_dim));
  w.set("flux.rope.freq_base", GgufValue::scalar(config.theta));
  add_synthetic_tensors(w, std::move(tensors), options.seed);
  return w;
}

void write_flux_model(const FluxConfig& config, std::string_view preset, const MakeModelOptions& options,
                      const std::filesystem::path& path, const GgufWriter::Progress& progress) {
  make_flux_model(config, preset, options).write(path, progress);
}

}  // namespace ferry
