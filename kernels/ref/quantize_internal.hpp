// Internals shared by the reference quantizers (quants_quantize*.cpp). Not a public header.
// Every function here is pure: inputs in, block bytes out, no static mutable state, so rows of one tensor can be
// quantized from many threads at once.
//
// Speed: `ferry make-model` quantizes multi-GB models with these, so the hot loops (one pass over a group of 16 or 32
// values per candidate scale) are written for the compiler's vectorizer: branch-free rounding and clamps, group lengths
// known at compile time, and sums formed as one term per element reduced by a fixed pairwise tree (tree_sum). Results
// therefore depend on neither the vector width the compiler picks nor the optimization level nor the thread count:
// the same inputs give the same bytes (checked at -O0, -O2, -O3 and -march=native).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <utility>

#include "ferry/kernels/block_layouts.hpp"

namespace ferry::ref::detail {

// The nearest integer code to v in [lo, hi], ties to even. v + 1.5 * 2^23 has an ulp of 1, so that float addition
// does the rounding, and for |v| < 2^22 the sum's bit pattern minus the constant's is the rounded integer. v is first
// limited to +-2^22 with std::min/std::max (single min/max instructions that vectorize; NaN passes through), so the
// integer subtraction never overflows and huge or infinite v land on the right end. No libm call, no branch. NaN (0 *
// inf from a vanishing scale) gives lo or hi by its sign bit (x86's 0 * inf is a negative NaN: lo), deterministically.
inline int nearest_code(float v, int lo, int hi) {
  constexpr float kMagic = 12582912.0f;
  constexpr int32_t kMagicBits = 0x4b400000;
  constexpr float kLimit = 4194304.0f;  // 2^22
  v = std::min(std::max(v, -kLimit), kLimit);
  const int32_t q = std::bit_cast<int32_t>(v + kMagic) - kMagicBits;
  return std::min(std::max(q, lo), hi);
}

// Sum of t[0..N) (N a power of two) as a fixed pairwise tree, overwriting t. The hot loops write one term per element
// into t (a plain element-wise loop the compiler vectorizes) and reduce it here, whose order never changes. One level
// per template instance, so every loop has a constant trip count and vectorizes at -O2 too.
template <int N>
inline float tree_sum(float* t) {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "tree_sum needs a power of two");
  if constexpr (N == 2) {
    return t[0] + t[1];
  } else {
    for (int i = 0; i < N / 2; ++i) t[i] += t[i + N / 2];
    return tree_sum<N / 2>(t);
  }
}

// Rounds a block's float scale to half; throws INVALID_ARGUMENT naming the type and block when it overflows the half
// range (the input values were too large for the format), instead of writing an infinite scale.
uint16_t scale_to_half(float scale, const char* type_name, int64_t block_index);

// Weighted least-squares fit of x ~ scale * q + offset with offset <= 0 (the K-quants store -offset as an unsigned
// "min"). q[i] in [0, nmax]; N values (16 or 32, instantiated in quantize_search.cpp). Tries a few candidate scales
// around nmax / (max - min), solves the weighted least-squares scale and offset for each one's rounding, keeps the
// least weighted squared error, then re-rounds against the best fit until the error stops falling.
struct AffineFit {
  float scale;   // >= 0
  float offset;  // <= 0
};
template <int N>
AffineFit fit_affine(const float* x, const float* w, int nmax);

// Weighted least-squares fit of x ~ scale * q with q in [-nneg, nneg - 1] (scale may be negative: the grid is
// asymmetric, so the sign decides which end the largest value uses). N values (16 or 32).
template <int N>
float fit_symmetric(const float* x, const float* w, int nneg);

// As fit_symmetric for the IQ4_NL codebook: x ~ scale * kIq4nlValues[q].
template <int N>
float fit_codebook(const float* x, const float* w);

// The IQ4_NL codebook value nearest to v (v already divided by the scale; ties go to the lower value), as a float, in
// branch-free vectorizable arithmetic: the first value plus every gap whose midpoint v exceeds. Codebook values are
// small integers, so every sum here is exact. The 15 gaps are a fold, not a loop, so the element loops around this
// vectorize at -O2 too (which does not unroll an inner loop).
template <int K>
inline float iq4nl_gap_below(float v) {
  constexpr auto lo = static_cast<float>(kIq4nlValues[K]), hi = static_cast<float>(kIq4nlValues[K + 1]);
  return v > 0.5f * (lo + hi) ? hi - lo : 0.0f;
}
template <int... K>
inline float iq4nl_snap_fold(float v, std::integer_sequence<int, K...>) {
  return (static_cast<float>(kIq4nlValues[0]) + ... + iq4nl_gap_below<K>(v));
}
inline float snap_iq4nl(float v) { return iq4nl_snap_fold(v, std::make_integer_sequence<int, 15>{}); }

// Index of the codebook value nearest to v (same choice as snap_iq4nl).
int nearest_iq4nl(float v);

// Importance weights for one super-block or block: w[i] = rms + |x[i]|. Large-magnitude weights dominate a layer's
// output error, so they get more weight, while the rms floor keeps small values from being ignored.
void importance_weights(const float* x, int n, float* w);

// Block quantizers of quants_quantize_k.cpp; x holds one block of finite floats (32 for IQ4_NL, else 256).
void quantize_block_q2_k(const float* x, BlockQ2_K& b, int64_t block_index);
void quantize_block_q3_k(const float* x, BlockQ3_K& b, int64_t block_index);
void quantize_block_q4_k(const float* x, BlockQ4_K& b, int64_t block_index);
void quantize_block_q5_k(const float* x, BlockQ5_K& b, int64_t block_index);
void quantize_block_q6_k(const float* x, BlockQ6_K& b, int64_t block_index);
void quantize_block_iq4_nl(const float* x, BlockIQ4_NL& b, int64_t block_index);
void quantize_block_iq4_xs(const float* x, BlockIQ4_XS& b, int64_t block_index);

}  // namespace ferry::ref::detail
