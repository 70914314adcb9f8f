// Token sampling from logits: greedy (temperature 0), or temperature + top-k + top-p (nucleus) with a seeded
// generator, so a run is reproducible for a seed.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace ferry {

struct SamplerConfig {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 40;        // <= 0: no top-k cut
  float top_p = 0.95f;       // >= 1: no nucleus cut
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws INVALID_ARGUMENT for a negative temperature or a top_p outside (0, 1].
  explicit Sampler(const SamplerConfig& config);
  // Greedy returns the first maximum; NaN logits are never chosen. Throws INVALID_ARGUMENT for empty logits or
  // logits with no finite value.
  int32_t sample(std::span<const float> logits);

 private:
  SamplerConfig m_config;
  std::mt19937_64 m_rng;
  std::vector<std::pair<float, int32_t>> m_candidates;  // reused across calls
};

}  // namespace ferry
