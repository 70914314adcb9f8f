#include "flux_inputs.hpp"

#include <random>

namespace ferry::cli {
namespace {

std::vector<float> normal_floats(int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace

GeneratedFluxInputs generate_flux_inputs(const FluxConfig& config, int64_t n_img, int64_t n_txt, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GeneratedFluxInputs in;
  in.img = normal_floats(n_img * config.in_channels, rng);
  in.txt = normal_floats(n_txt * config.context_in_dim, rng);
  in.vec = normal_floats(config.vec_in_dim, rng);
  return in;
}

}  // namespace ferry::cli
