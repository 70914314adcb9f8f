// Scale searches shared by the reference quantizers.
//
// Why a search and not min/max: with 3 to 6 bits per value, mapping the extreme value exactly onto the end of the grid
// wastes levels on one outlier. Each fit tries a few candidate scales around the min/max one, rounds every value for
// each, solves the weighted least-squares scale (and offset) for that rounding, keeps the best, and then alternates
// rounding and refitting until the error stops falling (a small Lloyd iteration). Weighted squared error is the
// objective throughout; the weights come from importance_weights.
//
// Cost (ferry make-model quantizes multi-GB models with this): one candidate is one vectorized pass over the group that
// forms the sums of the normal equations; its error then follows from those sums in closed form, with no second pass.
// Candidates are few but span the same range as a fine grid would: on Gaussian weights (bench_quantize_cpu), 7
// affine candidates over +-1.2 levels, 5 per end over +-0.9 levels (uniform) or +-8 units (codebook) come within 0.2%
// of the round-trip error of 21 or 42 candidates at 0.1-level (1-unit) steps, at a fifth of the time. The span
// matters more than the density: 3 per end over +-0.5 levels cost Q6_K 0.9%. The refits usually stop after one step.
#include <algorithm>
#include <cmath>
#include <string>

#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "quantize_internal.hpp"

namespace ferry::ref::detail {
namespace {

// Affine candidates: inverse scales (nmax + kAffineStep * k) / (max - min), k = -kAffineSteps..kAffineSteps.
constexpr int kAffineSteps = 3;
constexpr float kAffineStep = 0.4f;
// Symmetric candidates: the largest-magnitude value onto either end of the grid, nudged by step * k,
// k = -steps..steps, in levels of the uniform grid or in codebook units (whose values are 12 to 23 apart).
constexpr int kUniformSteps = 2;
constexpr float kUniformStep = 0.45f;
constexpr int kCodebookSteps = 2;
constexpr float kCodebookStep = 4.0f;
constexpr int kRefineIterations = 4;

// Extremes of t[0..N) by fixed pairwise trees, overwriting t: element-wise selects that vectorize (a running
// std::min over the group is a serial chain the compiler may not reorder). One level per instance, as tree_sum.
template <int N>
float tree_min(float* t) {
  if constexpr (N == 1) {
    return t[0];
  } else {
    for (int i = 0; i < N / 2; ++i) t[i] = t[i + N / 2] < t[i] ? t[i + N / 2] : t[i];
    return tree_min<N / 2>(t);
  }
}
template <int N>
float tree_max(float* t) {
  if constexpr (N == 1) {
    return t[0];
  } else {
    for (int i = 0; i < N / 2; ++i) t[i] = t[i + N / 2] > t[i] ? t[i + N / 2] : t[i];
    return tree_max<N / 2>(t);
  }
}

struct AffineSums {
  double sq, sqq, sqx;  // sum w q, sum w q^2, sum w q x
};

// Rounds x to the grid implied by (iscale, origin) and returns the sums that depend on the rounding.
template <int N>
AffineSums affine_sums(const float* x, const float* w, int nmax, float iscale, float origin) {
  float tq[N], tqq[N], tqx[N];
  for (int i = 0; i < N; ++i) {
    const auto q = static_cast<float>(nearest_code(iscale * (x[i] - origin), 0, nmax));
    const float wq = w[i] * q;
    tq[i] = wq;
    tqq[i] = wq * q;
    tqx[i] = wq * x[i];
  }
  return {tree_sum<N>(tq), tree_sum<N>(tqq), tree_sum<N>(tqx)};
}

struct AffineResult {
  float scale;
  float offset;
  double error;  // weighted squared error minus sum w x^2 (a constant of the group): comparable between candidates
};

// min over s >= 0, b <= 0 of sum w (s q + b - x)^2 for the rounding behind `s`; sw = sum w, sx = sum w x.
AffineResult solve_affine(double sw, double sx, const AffineSums& r) {
  double s = 0, b = 0;
  const double det = sw * r.sqq - r.sq * r.sq;
  if (det > 0) {
    const double inv_det = 1.0 / det;
    s = (sw * r.sqx - r.sq * sx) * inv_det;
    b = (r.sqq * sx - r.sq * r.sqx) * inv_det;
  }
  if (det <= 0 || b > 0) {  // the offset must stay <= 0: the constrained optimum lies on b = 0
    b = 0;
    s = r.sqq > 0 ? r.sqx / r.sqq : 0;
  }
  if (s < 0) {  // no positive scale helps: every value becomes the offset
    s = 0;
    b = sw > 0 ? std::min(sx / sw, 0.0) : 0;
  }
  const double error = s * s * r.sqq + 2 * s * b * r.sq + b * b * sw - 2 * s * r.sqx - 2 * b * sx;
  return {static_cast<float>(s), static_cast<float>(b), error};
}

}  // namespace

uint16_t scale_to_half(float scale, const char* type_name, int64_t block_index) {
  const uint16_t h = fp32_to_fp16(scale);
  if ((h & 0x7c00u) == 0x7c00u)
    fail(ErrorCategory::INVALID_ARGUMENT, std::string("quantize ") + type_name + ": block " +
                                              std::to_string(block_index) + " needs a scale of " +
                                              std::to_string(scale) + ", beyond the half range (max 65504)");
  return h;
}

void importance_weights(const float* x, int n, float* w) {
  double acc[4] = {};  // n is a multiple of 4 (32 or 256)
  for (int i = 0; i < n; i += 4)
    for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(x[i + l]) * x[i + l];
  const double sum2 = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  const float rms = static_cast<float>(std::sqrt(sum2 / n));
  for (int i = 0; i < n; ++i) w[i] = rms + std::fabs(x[i]);
}

template <int N>
AffineFit fit_affine(const float* x, const float* w, int nmax) {
  float tlo[N], thi[N], tw[N], tx[N];
  for (int i = 0; i < N; ++i) {
    tlo[i] = x[i];
    thi[i] = x[i];
    tw[i] = w[i];
    tx[i] = w[i] * x[i];
  }
  const float lo = std::min(tree_min<N>(tlo), 0.0f);  // the stored min is subtracted, so the grid's origin is at most 0
  const float hi = tree_max<N>(thi);
  if (hi <= lo) return {0.0f, lo};
  const double sw = tree_sum<N>(tw), sx = tree_sum<N>(tx);
  const float range = hi - lo;
  const float qmax = static_cast<float>(nmax);
  AffineResult best{0.0f, 0.0f, 0.0};
  for (int k = -kAffineSteps; k <= kAffineSteps; ++k) {
    const float iscale = (qmax + kAffineStep * static_cast<float>(k)) / range;
    const AffineResult r = solve_affine(sw, sx, affine_sums<N>(x, w, nmax, iscale, lo));
    if (k == -kAffineSteps || r.error < best.error) best = r;
  }
  for (int it = 0; it < kRefineIterations && best.scale > 0; ++it) {
    const AffineResult next = solve_affine(sw, sx, affine_sums<N>(x, w, nmax, 1.0f / best.scale, best.offset));
    if (!(next.error < best.error)) break;
    best = next;
  }
  return {best.scale, best.offset};
}
template AffineFit fit_affine<16>(const float*, const float*, int);
template AffineFit fit_affine<32>(const float*, const float*, int);

namespace {

// For a fixed rounding q the best scale is sum(w x q) / sum(w q^2) and the error falls by sum(w x q)^2 / sum(w q^2),
// so candidates are compared by that gain.
struct SymmetricResult {
  float scale;
  double gain;
};

template <int N, class Snap>
SymmetricResult symmetric_from_rounding(const float* x, const float* w, float iscale, Snap snap) {
  float txq[N], tqq[N];
  for (int i = 0; i < N; ++i) {
    const float q = snap(iscale * x[i]);
    const float wq = w[i] * q;
    txq[i] = wq * x[i];
    tqq[i] = wq * q;
  }
  const double sxq = tree_sum<N>(txq), sqq = tree_sum<N>(tqq);
  if (sqq <= 0) return {0.0f, 0.0};
  return {static_cast<float>(sxq / sqq), sxq * sxq / sqq};
}

// Shared search: candidate inverse scales map the largest-magnitude value onto each end of the grid (ends[0..1]),
// nudged by up to +-steps * step; then round-and-refit iterations.
template <int N, class Snap>
float fit_scale(const float* x, const float* w, const float ends[2], int steps, float step, Snap snap) {
  float amax = 0, vmax = 0;
  for (int i = 0; i < N; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      vmax = x[i];
    }
  }
  if (amax == 0) return 0.0f;
  SymmetricResult best{0.0f, -1.0};
  for (int e = 0; e < 2; ++e) {
    for (int k = -steps; k <= steps; ++k) {
      const float iscale = (ends[e] + step * static_cast<float>(k)) / vmax;
      const SymmetricResult r = symmetric_from_rounding<N>(x, w, iscale, snap);
      if (r.gain > best.gain) best = r;
    }
  }
  for (int it = 0; it < kRefineIterations && best.scale != 0; ++it) {
    const SymmetricResult next = symmetric_from_rounding<N>(x, w, 1.0f / best.scale, snap);
    if (!(next.gain > best.gain)) break;
    best = next;
  }
  return best.scale;
}

}  // namespace

template <int N>
float fit_symmetric(const float* x, const float* w, int nneg) {
  const float ends[2] = {-static_cast<float>(nneg), static_cast<float>(nneg - 1)};
  return fit_scale<N>(x, w, ends, kUniformSteps, kUniformStep,
                      [nneg](float v) { return static_cast<float>(nearest_code(v, -nneg, nneg - 1)); });
}
template float fit_symmetric<16>(const float*, const float*, int);

int nearest_iq4nl(float v) {
  int q = 0;
  for (int k = 0; k < 15; ++k)
    q += v > 0.5f * (static_cast<float>(kIq4nlValues[k]) + static_cast<float>(kIq4nlValues[k + 1])) ? 1 : 0;
  return q;
}

template <int N>
float fit_codebook(const float* x, const float* w) {
  const float ends[2] = {static_cast<float>(kIq4nlValues[0]), static_cast<float>(kIq4nlValues[15])};
  return fit_scale<N>(x, w, ends, kCodebookSteps, kCodebookStep, [](float v) { return snap_iq4nl(v); });
}
template float fit_codebook<32>(const float*, const float*);

}  // namespace ferry::ref::detail
