// The Flux transformer as scheduler layers, each running block.hpp's functions over the Ops the scheduler hands it:
//   img_in (FluxInputLayer) | double_blocks.0 .. N-1 | single_blocks.0 .. M-1 | final_layer (FluxFinalLayer)
// The residual stream is [n_txt + n_img, hidden] (txt rows, then img rows). The input layer turns the packed latents
// the runner leaves in the first in_channels columns of the img rows into img_in of them; the final layer writes the
// velocity [n_img, in_channels] as the stack's output. The embedders of the conditioning (time_in, guidance_in,
// vector_in: three MLPs on one vector per step) and txt_in (once per prompt) run on the host in the runner: they are a
// small fixed cost (~0.1% of a step's FLOPs), and keeping them off the stack keeps every layer's input the same
// residual stream.
//
// Per-step inputs (FluxStepInputs, through StepContext::inputs): n_txt and n_img, SiLU(vec) and the RoPE positions;
// the scheduler puts a copy on the device where a layer runs. The modulation linears (img_mod, txt_mod, modulation,
// final adaLN: ~27% of the bytes) multiply that one vector: each layer declares them as vector_matmul_weights, so
// the planner does not size GEMM scratch for them at T tokens. The other matrices multiply the image rows (img_in,
// a double block's img stream, final_layer.linear), the text rows (a double block's txt stream) or all of them (the
// single blocks): each layer says which through matmul_tokens, for the text-token count the stack is planned for
// (`text_tokens` below; a step's own count comes with the step and is what runs), so the cost model prices a double
// block's txt stream at 512 tokens, not at the step's 4608.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ferry/models/flux/block.hpp"
#include "ferry/models/flux/model.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry {

// The layout of StepContext::inputs for a Flux stack: [n_txt, n_img, 0, 0 | SiLU(vec) (hidden) | positions
// (n_tokens x n_axes)]. The header keeps the vectors 16-byte aligned.
struct FluxStepInputs {
  static constexpr size_t kHeader = 4;
  static size_t floats(const FluxConfig& c, int64_t n_tokens);
  // out resized to floats(c, n_txt + n_img).
  static void pack(const FluxConfig& c, int64_t n_txt, int64_t n_img, std::span<const float> silu_vec,
                   std::span<const float> positions, std::vector<float>& out);
  // The view a layer computes with: counts from the host inputs, pointers into `on_device` (the same layout on the
  // device the layer runs on). INTERNAL naming `layer` when the inputs do not describe this step.
  static FluxStepView view(const FluxConfig& c, const StepContext& step, const float* on_device,
                           const std::string& layer);
};

// Common to the Flux layers: the tensors in the order forward() receives them, with their names.
class FluxLayer : public Layer {
 public:
  const std::string& name() const override { return m_name; }
  std::span<const WeightTensor> weights() const override { return m_tensors; }
  int64_t width() const override { return m_config.hidden; }
  std::vector<size_t> matmul_weights() const override;
  std::vector<size_t> vector_matmul_weights() const override;
  // Image rows: n_tokens less the planned text tokens (at least one); text rows: the rest.
  std::vector<int64_t> matmul_tokens(int64_t n_tokens) const override;

 protected:
  // The rows of the step a linear multiplies.
  enum class Rows { ALL, IMG, TXT, ONE };  // ONE: the conditioning vector only
  // text_tokens: of the steps the stack is planned for (matmul_tokens); forward() reads the step's own count.
  FluxLayer(const FluxConfig& config, std::string name, int64_t text_tokens)
      : m_config(config), m_name(std::move(name)), m_text_tokens(text_tokens) {}
  // Adds "<name>.weight" and "<name>.bias".
  void add_linear(const std::string& name, const FluxLinear& l, Rows rows);
  void add_vector(const std::string& name, const float* data, int64_t n);
  FluxStepView step_view(const StepContext& step, const LayerRun& run) const;

  // Reads views back in the order they were added.
  class Cursor {
   public:
    explicit Cursor(std::span<const QuantMatrixView> views) : m_views(views) {}
    FluxLinear linear();
    const float* vector() { return static_cast<const float*>(m_views[m_next++].data); }

   private:
    std::span<const QuantMatrixView> m_views;
    size_t m_next = 0;
  };

  const FluxConfig& m_config;
  std::string m_name;
  std::vector<WeightTensor> m_tensors;
  int64_t m_text_tokens = 0;
  std::vector<std::pair<size_t, Rows>> m_matmuls;  // index into m_tensors, rows it multiplies
};

class FluxInputLayer final : public FluxLayer {
 public:
  FluxInputLayer(const FluxConfig& config, const FluxWeights& weights, int64_t text_tokens);
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;
};

class FluxDoubleLayer final : public FluxLayer {
 public:
  FluxDoubleLayer(const FluxConfig& config, const FluxDoubleWeights& weights, int64_t index, int64_t text_tokens);
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;
};

class FluxSingleLayer final : public FluxLayer {
 public:
  FluxSingleLayer(const FluxConfig& config, const FluxSingleWeights& weights, int64_t index, int64_t text_tokens);
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;
};

class FluxFinalLayer final : public FluxLayer {
 public:
  FluxFinalLayer(const FluxConfig& config, const FluxWeights& weights, int64_t text_tokens);
  size_t workspace_floats(int64_t n_tokens, Device device) const override;
  // The velocity of up to n_tokens image rows.
  size_t output_floats(int64_t n_tokens) const override {
    return static_cast<size_t>(n_tokens * m_config.out_channels());
  }
  void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
               const LayerRun& run) const override;
};

// The stack: img_in, the double blocks, the single blocks, the final layer; text_tokens: of the steps it is planned
// for (it prices the matrices, Layer::matmul_tokens; what runs is each step's own count).
std::vector<std::unique_ptr<Layer>> make_flux_layers(const FluxConfig& config, const FluxWeights& weights,
                                                     int64_t text_tokens);

}  // namespace ferry
