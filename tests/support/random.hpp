// Deterministic random inputs for tests: never zeros or constants (they hide unwritten outputs and indexing bugs).
// Each test draws fresh data from its own seed; a failing seed is printed by the test so it can be replayed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace ferry::test {

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Gaussian data with occasional outliers, the shape real weights have (quantizers must handle both).
inline std::vector<float> random_weights(size_t n, uint64_t seed, float sigma = 0.02f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::uniform_int_distribution<int> outlier(0, 999);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng) * (outlier(rng) == 0 ? 8.0f : 1.0f);
  return v;
}

// Normalised error as ggml's op tests use it: mse(a, b) / mse(b, 0). Computed in double.
template <class A, class B>
double normalized_error(const A& a, const B& b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return den == 0.0 ? num : num / den;
}

}  // namespace ferry::test
