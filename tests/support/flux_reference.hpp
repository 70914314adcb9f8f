// A float64 scalar implementation of one Flux model call (the velocity for one denoising step), written from the
// published reference model (black-forest-labs/flux, model.py and modules/layers.py) independently of ferry's block:
// the oracle for the CPU and GPU paths. Weights are dequantized with ref::dequantize; everything else is plain double
// math. K and V are rounded to FP16 before attention, as the attention operands of ferry's ops are, so the comparison
// measures kernel error rather than that format.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "ferry/models/flux/model.hpp"

namespace ferry::test {

struct FluxReferenceInputs {
  int64_t n_txt = 0;
  int64_t n_img = 0;
  std::vector<float> img;  // [n_img, in_channels]: packed latents
  std::vector<float> txt;  // [n_txt, context_in_dim]: T5 embeddings
  std::vector<float> y;    // [vec_in_dim]: pooled CLIP embedding
  std::vector<float> ids;  // [n_txt + n_img, 3]: position ids (txt first)
  float timestep = 0.5f;   // in [0, 1]; the model embeds t * 1000
  float guidance = 3.5f;   // ignored without guidance_in
};

// Random inputs of one model call for an image of width x height pixels (16 pixels per packed latent) and n_txt
// text tokens, from `seed`; timestep 0.73, guidance 3.5.
FluxReferenceInputs make_flux_inputs(const FluxConfig& c, int64_t width, int64_t height, int64_t n_txt, uint64_t seed);

// The velocity [n_img, in_channels].
std::vector<double> flux_reference_forward(const FluxConfig& c, const FluxWeights& w, const FluxReferenceInputs& in);

// |a - b| / |b| over all elements.
inline double flux_relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace ferry::test
