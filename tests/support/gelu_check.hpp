// How far a float GELU kernel may be from the reference, element by element.
//
// GELU(x) = x / (1 + e^(-2u)), u = sqrt(2/pi)·(x + 0.044715·x³). A kernel computes u in float, so u carries a relative
// error of a few ulps, and e^(-2u) turns it into a relative error of |2u| times that: for x = -10, |2u| = 87 and the
// output is only good to ~2e-5 relative even when every step is correctly rounded. A normalised error over a few
// elements (or one) therefore cannot have one tolerance for every seed: one element at x = -9.9 alone gives 2e-10.
// The bound here follows the function instead: 8·(1 + |2u|)·2^-24 relative (a float model with a 2-ulp exp, as CUDA's
// expf has, stays under half of it), plus the smallest subnormal for outputs that underflow. A kernel evaluating
// 0.5·x·(1 + tanh(u)) in float misses it by orders of magnitude below x = -3 (the sum cancels), and so does any wrong
// coefficient or index.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

namespace ferry::test {

inline double gelu_tanh_error_bound(float x, double reference) {
  const double v = x;
  const double two_u = 2.0 * std::sqrt(2.0 / 3.14159265358979323846) * (v + 0.044715 * v * v * v);
  return 8.0 * (1.0 + std::fabs(two_u)) * std::ldexp(1.0, -24) * std::fabs(reference) +
         std::numeric_limits<float>::denorm_min();
}

// The number of elements of `got` outside the bound (NaN counts as outside); `first` gets the index of the first.
inline size_t gelu_tanh_outside_bound(const float* x, const float* got, const float* reference, size_t n,
                                      size_t* first = nullptr) {
  size_t outside = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - reference[i]);
    if (!(err <= gelu_tanh_error_bound(x[i], reference[i]))) {
      if (outside++ == 0 && first != nullptr) *first = i;
    }
  }
  return outside;
}

}  // namespace ferry::test
