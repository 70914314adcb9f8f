// The inputs `ferry flux-step` generates when none are given, and `ferry bench` steps on: latents, text embeddings
// and the pooled vector, each drawn from N(0, 1) by one generator seeded with `seed`, in that order.
#pragma once

#include <cstdint>
#include <vector>

#include "ferry/models/flux/model.hpp"

namespace ferry::cli {

struct GeneratedFluxInputs {
  std::vector<float> img;  // [n_img, in_channels]
  std::vector<float> txt;  // [n_txt, context_in_dim]
  std::vector<float> vec;  // [vec_in_dim]
};

GeneratedFluxInputs generate_flux_inputs(const FluxConfig& config, int64_t n_img, int64_t n_txt, uint64_t seed);

}  // namespace ferry::cli
