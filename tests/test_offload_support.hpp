// Shared by the offload tests (CPU and GPU): the float64-accumulating reference of the synthetic stack, comparisons,
// and the process's peak resident memory.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ferry/kernels/ref/ops.hpp"
#include "support/synthetic_stack.hpp"

#include "support/asan.hpp"

namespace ferry::test {

// x <- layer_l(...layer_0(x)) with the scalar reference ops (ferry::ref), layers [first, last).
inline void reference_forward(const SyntheticStack& stack, std::vector<float>& x, int64_t n_tokens, size_t first = 0,
                              size_t last = SIZE_MAX) {
  const SyntheticStackConfig& c = stack.config();
  std::vector<float> h(static_cast<size_t>(n_tokens * c.width)), u(static_cast<size_t>(n_tokens * c.ffn)), g(u.size()),
      v(h.size());
  last = std::min(last, stack.size());
  for (size_t l = first; l < last; ++l) {
    const auto w = stack.layer(l).weights();
    ref::rms_norm(x.data(), static_cast<const float*>(w[SyntheticLayer::kNorm].view.data), h.data(), n_tokens, c.width,
                  c.rms_eps);
    ref::matmul(w[SyntheticLayer::kW1].view, h.data(), n_tokens, u.data());
    ref::gelu_tanh(u.data(), g.data(), n_tokens * c.ffn);
    ref::matmul(w[SyntheticLayer::kW2].view, g.data(), n_tokens, v.data());
    ref::add(x.data(), v.data(), x.data(), n_tokens * c.width);
  }
}

// Relative RMS error of what the layers added: |(got - x0) - (want - x0)| / |want - x0|. Comparing increments keeps
// the residual input (identical on both sides) from diluting an error in the layers' contribution.
inline double increment_error(const std::vector<float>& got, const std::vector<float>& want,
                              const std::vector<float>& x0) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    const double inc = static_cast<double>(want[i]) - x0[i];
    num += d * d;
    den += inc * inc;
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline bool bit_identical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

inline bool all_finite(const std::vector<float>& v) {
  for (float f : v)
    if (!std::isfinite(f)) return false;
  return true;
}

// VmHWM from /proc/self/status (bytes), 0 if unavailable.
inline uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmHWM:") {
      uint64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, key);
  }
  return 0;
}

}  // namespace ferry::test
