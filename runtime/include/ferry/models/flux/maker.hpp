// Synthetic Flux models: the shapes of Flux.1-dev and Flux.1-schnell (shared/data/model-shapes.json, embedded here
// because the GPU machine has no copy of that folder) and small ones for tests and the built-in default of
// `ferry flux-step`, written with the tensor names and quantization rules of ComfyUI-format GGUF files:
// - 2-D weights inside double_blocks / single_blocks get the file's type (a k-quant whose block does not divide the
//   row falls back as llama.cpp's quantizer does);
// - the embedders (img_in, txt_in, time_in, vector_in, guidance_in) and the final layer stay F16 (F32 in an F32 file);
// - biases, norm scales and any tensor of at most 1024 elements are F32.
// Values come from the model maker's generator (fill_synthetic_tensor): deterministic per seed and tensor name.
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/gguf_writer.hpp"
#include "ferry/models/flux/model.hpp"
#include "ferry/models/model_maker.hpp"

namespace ferry {

struct FluxPreset {
  std::string_view name;
  FluxConfig config;
};
// flux-tiny, flux-tiny-schnell (2 + 2 blocks, width 256: tests), flux-small (the built-in default of flux-step),
// flux-1-dev, flux-1-schnell.
std::span<const FluxPreset> flux_presets();
const FluxPreset* find_flux_preset(std::string_view name) noexcept;
std::string flux_preset_names();

// The type of one tensor in a file of `file_type` (the rules above).
GgmlType flux_tensor_type(ModelFileType file_type, const FluxTensorSpec& spec);
// Every tensor in file order, typed and with its value distribution (weights N(0, 1/fan_in), biases N(0, 0.5^2), norm
// scales N(1, 0.2^2): spread enough that a kernel using the wrong scale or bias shows). Validates the configuration.
std::vector<SyntheticTensor> plan_flux_tensors(const FluxConfig& config, ModelFileType file_type);
// Bytes of tensor data plan_flux_tensors describes (without alignment padding).
uint64_t flux_tensor_bytes(const std::vector<SyntheticTensor>& tensors);

// general.architecture = flux, the RoPE axes and theta as flux.rope.axes_dim / flux.rope.freq_base, the tensors.
GgufWriter make_flux_model(const FluxConfig& config, std::string_view preset, const MakeModelOptions& options);
void write_flux_model(const FluxConfig& config, std::string_view preset, const MakeModelOptions& options,
                      const std::filesystem::path& path, const GgufWriter::Progress& progress = {});

}  // namespace ferry
