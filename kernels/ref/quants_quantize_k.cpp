// Reference quantizers for the 256-element super-block types: Q2_K .. Q6_K and IQ4_XS (and IQ4_NL, which is one
// IQ4_XS group with a half scale).
//
// Two levels of scales: each group (16 or 32 values) gets a float scale (and min) from a weighted least-squares search
// (quantize_search.cpp); the group scales are then quantized to 4, 6 or 8 bits against one half-precision super-block
// scale. Quantizing a group scale moves it off its optimum, so each quantized group scale is tried at +-1 step with
// the values re-rounded, and the one with the least weighted error is kept. Values are always rounded against the
// scales exactly as the dequantizer will compute them (float products of the half-rounded super-block scale), so the
// error measured here is the error a reader sees.
#include <algorithm>
#include <cmath>
#include <iterator>
#include <limits>

#include "ferry/half.hpp"
#include "quantize_internal.hpp"

namespace ferry::ref::detail {
namespace {

// ---- affine groups: value = (d * sc) * q - (dmin * m), sc, m, q unsigned (Q2_K, Q4_K, Q5_K) ----------------------

// Weighted squared error of the group against the scales the dequantizer will use (dl = d * sc, ml = dmin * m), each
// value rounded to its nearest code. Multiplying by 1 / dl instead of dividing can move a value that lies within an
// ulp of a rounding boundary to the other code: both are equally near, so the error is the same either way.
// Not inlined: compiled on its own the loop vectorizes, whereas inlined into the candidate loops the compiler may
// unroll it first and then leave it scalar (measured: Q2_K 2x slower that way).
template <int N>
[[gnu::noinline]] float affine_group_error(const float* x, const float* w, int nmax, float dl, float ml) {
  const float inv = dl > 0 ? 1.0f / dl : 0.0f;
  float t[N];
  for (int i = 0; i < N; ++i) {
    const auto q = static_cast<float>(nearest_code((x[i] + ml) * inv, 0, nmax));
    const float e = (dl * q - ml) - x[i];
    t[i] = w[i] * e * e;
  }
  return tree_sum<N>(t);
}

template <int N>
void affine_group_codes(const float* x, int nmax, float dl, float ml, int* q) {
  const float inv = dl > 0 ? 1.0f / dl : 0.0f;
  for (int i = 0; i < N; ++i) q[i] = nearest_code((x[i] + ml) * inv, 0, nmax);
}

struct AffineCodes {
  uint16_t d = 0, dmin = 0;
  int sc[16] = {}, m[16] = {};
  int q[256] = {};
};

template <int kGroups, int kGroup>
AffineCodes quantize_affine_groups(const float* x, int nmax, int code_max, const char* name, int64_t block_index) {
  constexpr int n_groups = kGroups, group = kGroup, n = kGroups * kGroup;
  float w[256];
  importance_weights(x, n, w);
  float scale[16], min[16];
  float max_scale = 0, max_min = 0;
  for (int g = 0; g < n_groups; ++g) {
    const AffineFit f = fit_affine<kGroup>(x + g * group, w + g * group, nmax);
    scale[g] = f.scale;
    min[g] = -f.offset;
    max_scale = std::max(max_scale, scale[g]);
    max_min = std::max(max_min, min[g]);
  }
  AffineCodes c;
  c.d = scale_to_half(max_scale / static_cast<float>(code_max), name, block_index);
  c.dmin = scale_to_half(max_min / static_cast<float>(code_max), name, block_index);
  const float d = fp16_to_fp32(c.d);
  const float dmin = fp16_to_fp32(c.dmin);
  const float inv_d = d > 0 ? 1.0f / d : 0.0f, inv_dmin = dmin > 0 ? 1.0f / dmin : 0.0f;
  for (int g = 0; g < n_groups; ++g) {
    const float* xg = x + g * group;
    const float* wg = w + g * group;
    const int sc0 = nearest_code(scale[g] * inv_d, 0, code_max);
    const int m0 = nearest_code(min[g] * inv_dmin, 0, code_max);
    float best = std::numeric_limits<float>::infinity();
    for (int sc = std::max(sc0 - 1, 0); sc <= std::min(sc0 + 1, code_max); ++sc) {
      for (int m = std::max(m0 - 1, 0); m <= std::min(m0 + 1, code_max); ++m) {
        const float err =
            affine_group_error<kGroup>(xg, wg, nmax, d * static_cast<float>(sc), dmin * static_cast<float>(m));
        if (err < best) {
          best = err;
          c.sc[g] = sc;
          c.m[g] = m;
        }
      }
    }
    affine_group_codes<kGroup>(xg, nmax, d * static_cast<float>(c.sc[g]), dmin * static_cast<float>(c.m[g]),
                               c.q + g * group);
  }
  return c;
}

// ---- scaled groups: value = (d * sc) * grid(q), sc signed (Q3_K, Q6_K, IQ4_XS) ------------------------------------

struct UniformGrid {  // q in [-nneg, nneg - 1]
  int nneg;
  float snap(float v) const { return static_cast<float>(index(v)); }
  int index(float v) const { return nearest_code(v, -nneg, nneg - 1); }
  template <int N>
  float fit(const float* x, const float* w) const {
    return fit_symmetric<N>(x, w, nneg);
  }
};

struct CodebookGrid {  // q indexes kIq4nlValues
  float snap(float v) const { return snap_iq4nl(v); }
  int index(float v) const { return nearest_iq4nl(v); }
  template <int N>
  float fit(const float* x, const float* w) const {
    return fit_codebook<N>(x, w);
  }
};

struct ScaledCodes {
  uint16_t d = 0;
  int sc[16] = {};
  int q[256] = {};
};

// As affine_group_error for value = dl * grid value (dl of either sign, or 0); not inlined for the same reason.
template <int N, class Grid>
[[gnu::noinline]] float scaled_group_error(const float* x, const float* w, const Grid& grid, float dl) {
  const float inv = dl != 0 ? 1.0f / dl : 0.0f;
  float t[N];
  for (int i = 0; i < N; ++i) {
    const float e = dl * grid.snap(x[i] * inv) - x[i];
    t[i] = w[i] * e * e;
  }
  return tree_sum<N>(t);
}

template <int N, class Grid>
void scaled_group_codes(const float* x, const Grid& grid, float dl, int* q) {
  const float inv = dl != 0 ? 1.0f / dl : 0.0f;
  for (int i = 0; i < N; ++i) q[i] = grid.index(x[i] * inv);
}

// Group codes sc lie in [code_lo, code_hi] with code_lo < 0: the super-block scale maps the largest-magnitude group
// scale onto code_lo, the longer side of the signed range.
template <int kGroups, int kGroup, class Grid>
ScaledCodes quantize_scaled_groups(const float* x, const Grid& grid, int code_lo, int code_hi, const char* name,
                                   int64_t block_index) {
  constexpr int n_groups = kGroups, group = kGroup, n = kGroups * kGroup;
  float w[256];
  importance_weights(x, n, w);
  float scale[16];
  float big = 0;
  for (int g = 0; g < n_groups; ++g) {
    scale[g] = grid.template fit<kGroup>(x + g * group, w + g * group);
    if (std::fabs(scale[g]) > std::fabs(big)) big = scale[g];
  }
  ScaledCodes c;
  c.d = scale_to_half(big / static_cast<float>(code_lo), name, block_index);
  const float d = fp16_to_fp32(c.d);
  const float inv_d = d != 0 ? 1.0f / d : 0.0f;
  for (int g = 0; g < n_groups; ++g) {
    const float* xg = x + g * group;
    const float* wg = w + g * group;
    const int sc0 = nearest_code(scale[g] * inv_d, code_lo, code_hi);
    float best = std::numeric_limits<float>::infinity();
    for (int sc = std::max(sc0 - 1, code_lo); sc <= std::min(sc0 + 1, code_hi); ++sc) {
      const float err = scaled_group_error<kGroup>(xg, wg, grid, d * static_cast<float>(sc));
      if (err < best) {
        best = err;
        c.sc[g] = sc;
      }
    }
    scaled_group_codes<kGroup>(xg, grid, d * static_cast<float>(c.sc[g]), c.q + g * group);
  }
  return c;
}

// Q4_K / Q5_K scale packing (inverse of k4_scale_min).
void pack_k4_scales(const int* sc, const int* m, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
  }
}

}  // namespace

void quantize_block_q2_k(const float* x, BlockQ2_K& b, int64_t block_index) {
  const AffineCodes c = quantize_affine_groups<16, 16>(x, 3, 15, "Q2_K", block_index);
  b.d = c.d;
  b.dmin = c.dmin;
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<uint8_t>(c.sc[g] | (c.m[g] << 4));
  // Element 128h + 32j + l sits in bits 2j of qs[32h + l].
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      int byte = 0;
      for (int j = 0; j < 4; ++j) byte |= c.q[128 * h + 32 * j + l] << (2 * j);
      b.qs[32 * h + l] = static_cast<uint8_t>(byte);
    }
  }
}

void quantize_block_q3_k(const float* x, BlockQ3_K& b, int64_t block_index) {
  const ScaledCodes c = quantize_scaled_groups<16, 16>(x, UniformGrid{4}, -32, 31, "Q3_K", block_index);
  b.d = c.d;
  std::fill(std::begin(b.scales), std::end(b.scales), uint8_t{0});
  for (int g = 0; g < 16; ++g) {
    const int stored = c.sc[g] + 32;
    if (g < 8)
      b.scales[g] = static_cast<uint8_t>(b.scales[g] | (stored & 15));
    else
      b.scales[g - 8] = static_cast<uint8_t>(b.scales[g - 8] | ((stored & 15) << 4));
    b.scales[8 + g % 4] = static_cast<uint8_t>(b.scales[8 + g % 4] | ((stored >> 4) << (2 * (g / 4))));
  }
  // q + 4 in [0, 7]: 2 low bits in qs like Q2_K, the third in hmask[l] bit 4h + j (set means "no -4").
  std::fill(std::begin(b.hmask), std::end(b.hmask), uint8_t{0});
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      int byte = 0;
      for (int j = 0; j < 4; ++j) {
        const int u = c.q[128 * h + 32 * j + l] + 4;
        byte |= (u & 3) << (2 * j);
        b.hmask[l] = static_cast<uint8_t>(b.hmask[l] | ((u >> 2) << (4 * h + j)));
      }
      b.qs[32 * h + l] = static_cast<uint8_t>(byte);
    }
  }
}

void quantize_block_q4_k(const float* x, BlockQ4_K& b, int64_t block_index) {
  const AffineCodes c = quantize_affine_groups<8, 32>(x, 15, 63, "Q4_K", block_index);
  b.d = c.d;
  b.dmin = c.dmin;
  pack_k4_scales(c.sc, c.m, b.scales);
  for (int ch = 0; ch < 4; ++ch)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * ch + l] = static_cast<uint8_t>(c.q[64 * ch + l] | (c.q[64 * ch + 32 + l] << 4));
}

void quantize_block_q5_k(const float* x, BlockQ5_K& b, int64_t block_index) {
  const AffineCodes c = quantize_affine_groups<8, 32>(x, 31, 63, "Q5_K", block_index);
  b.d = c.d;
  b.dmin = c.dmin;
  pack_k4_scales(c.sc, c.m, b.scales);
  for (int ch = 0; ch < 4; ++ch)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * ch + l] = static_cast<uint8_t>((c.q[64 * ch + l] & 15) | ((c.q[64 * ch + 32 + l] & 15) << 4));
  // Fifth bit of group g's element l is bit g of qh[l].
  for (int l = 0; l < 32; ++l) {
    int byte = 0;
    for (int g = 0; g < 8; ++g) byte |= (c.q[32 * g + l] >> 4) << g;
    b.qh[l] = static_cast<uint8_t>(byte);
  }
}

void quantize_block_q6_k(const float* x, BlockQ6_K& b, int64_t block_index) {
  const ScaledCodes c = quantize_scaled_groups<16, 16>(x, UniformGrid{32}, -128, 127, "Q6_K", block_index);
  b.d = c.d;
  for (int g = 0; g < 16; ++g) b.scales[g] = static_cast<int8_t>(c.sc[g]);
  // q + 32 in [0, 63]; element 128h + 32k + l: low nibble into ql[64h + 32(k % 2) + l] (nibble k / 2), the two high
  // bits into qh[32h + l] bits 2k.
  std::fill(std::begin(b.ql), std::end(b.ql), uint8_t{0});
  std::fill(std::begin(b.qh), std::end(b.qh), uint8_t{0});
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int u = c.q[128 * h + 32 * k + l] + 32;
        uint8_t& low = b.ql[64 * h + 32 * (k % 2) + l];
        low = static_cast<uint8_t>(low | ((u & 15) << (4 * (k / 2))));
        b.qh[32 * h + l] = static_cast<uint8_t>(b.qh[32 * h + l] | ((u >> 4) << (2 * k)));
      }
    }
  }
}

void quantize_block_iq4_nl(const float* x, BlockIQ4_NL& b, int64_t block_index) {
  float w[32];
  importance_weights(x, 32, w);
  const CodebookGrid grid;
  b.d = scale_to_half(grid.fit<32>(x, w), "IQ4_NL", block_index);
  const float d = fp16_to_fp32(b.d);
  int q[32];
  scaled_group_codes<32>(x, grid, d, q);
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
}

void quantize_block_iq4_xs(const float* x, BlockIQ4_XS& b, int64_t block_index) {
  const ScaledCodes c = quantize_scaled_groups<8, 32>(x, CodebookGrid{}, -32, 31, "IQ4_XS", block_index);
  b.d = c.d;
  b.scales_h = 0;
  for (int g = 0; g < 8; ++g) {
    const int ls = c.sc[g] + 32;
    if (g % 2 == 0)
      b.scales_l[g / 2] = static_cast<uint8_t>(ls & 15);
    else
      b.scales_l[g / 2] = static_cast<uint8_t>(b.scales_l[g / 2] | ((ls & 15) << 4));
    b.scales_h = static_cast<uint16_t>(b.scales_h | ((ls >> 4) << (2 * g)));
  }
  for (int g = 0; g < 8; ++g)
    for (int j = 0; j < 16; ++j) b.qs[16 * g + j] = static_cast<uint8_t>(c.q[32 * g + j] | (c.q[32 * g + j + 16] << 4));
}

}  // namespace ferry::ref::detail
