// CPU elementwise, normalisation, RoPE and embedding ops. All of them are memory-bound passes over activations, so the
// aim is one pass per output (two for layer norm), loops the compiler can vectorise, and oneTBB only when a call is
// large enough to pay for it (kParallelElems). Numerics: norm statistics are accumulated in double from float
// partial sums of eight lanes, so a row of 16K elements loses nothing visible; RoPE angles pos * base^(-2i/d) are
// formed in double (a float angle at position 30000 would be off by ~2e-3 rad) and their cos/sin computed once per
// token and reused for every head.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "dequant.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "op_checks.hpp"

namespace ferry::cpu {
namespace {

constexpr int64_t kParallelElems = 1 << 16;

// Runs fn(begin, end) over [0, count), in parallel when count * elems_per_item is large.
template <class Fn>
void for_range(int64_t count, int64_t elems_per_item, const Fn& fn) {
  if (count <= 0) return;
  const int64_t per = std::max<int64_t>(1, elems_per_item);
  if (count * per < kParallelElems) {
    fn(int64_t{0}, count);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, (kParallelElems / 4) / per);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, count, grain),
                    [&](const tbb::blocked_range<int64_t>& r) { fn(r.begin(), r.end()); });
}

// Elementwise ops: chunks of the flat range.
template <class Fn>
void for_elements(int64_t n, const Fn& fn) {
  constexpr int64_t kChunk = 4096;
  for_range((n + kChunk - 1) / kChunk, kChunk,
            [&](int64_t c0, int64_t c1) { fn(c0 * kChunk, std::min(n, c1 * kChunk)); });
}

// Sum of x (or of (x - shift)^2 when kSquares) over n, in eight float lanes combined in double.
template <bool kSquares>
double lane_sum(const float* x, int64_t n, float shift = 0.0f) {
  float part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float v = x[i + l] - shift;
      part[l] += kSquares ? v * v : v;
    }
  double s = 0.0;
  for (float p : part) s += p;
  for (; i < n; ++i) {
    const double v = static_cast<double>(x[i]) - shift;
    s += kSquares ? v * v : v;
  }
  return s;
}

void rotate_pairs(float* v, int64_t half, const float* cs, const float* sn, RopeMode mode) {
  // ADJACENT: (v[2i], v[2i+1]); HALF_SPLIT: (v[i], v[i + half]).
  if (mode == RopeMode::ADJACENT) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cs[i] - b * sn[i];
      v[2 * i + 1] = a * sn[i] + b * cs[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cs[i] - b * sn[i];
      v[i + half] = a * sn[i] + b * cs[i];
    }
  }
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  ferry::detail::check_rows("cpu::rms_norm", rows, n);
  for_range(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      const float inv = static_cast<float>(1.0 / std::sqrt(lane_sum<true>(xr, n) / static_cast<double>(n) + eps));
      if (weight != nullptr)
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv * weight[i];
      else
        for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * inv;
    }
  });
}

void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) {
  ferry::detail::check_rows("cpu::layer_norm", rows, n);
  for_range(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * n;
      float* yr = y + r * n;
      // Two passes: the variance of (x - mean) does not cancel catastrophically when |mean| >> std.
      const float mean = static_cast<float>(lane_sum<false>(xr, n) / static_cast<double>(n));
      const double var = lane_sum<true>(xr, n, mean) / static_cast<double>(n);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
      for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * inv;
    }
  });
}

void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode) {
  ferry::detail::check_rope("cpu::rope", n_tokens, n_head, head_dim);
  const int64_t half = head_dim / 2;
  // Stack scratch (check_rope bounds head_dim): RoPE runs once per layer per step, and the per-token path allocates
  // nothing.
  double inv_freq[ferry::detail::kMaxHeadDim / 2];
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / head_dim);
  for_range(n_tokens, n_head * head_dim, [&](int64_t t0, int64_t t1) {
    float cs[ferry::detail::kMaxHeadDim / 2], sn[ferry::detail::kMaxHeadDim / 2];
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = positions[t] * inv_freq[i];
        cs[i] = static_cast<float>(std::cos(angle));
        sn[i] = static_cast<float>(std::sin(angle));
      }
      for (int64_t h = 0; h < n_head; ++h) rotate_pairs(x + (t * n_head + h) * head_dim, half, cs, sn, mode);
    }
  });
}

void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta) {
  ferry::detail::check_rope_multi_axis("cpu::rope_multi_axis", n_tokens, n_head, head_dim, axes_dim, n_axes);
  // Pair p of the head (elements 2p, 2p + 1) belongs to axis axis_of[p] as its pair index local[p].
  const int64_t half = head_dim / 2;
  int32_t axis_of[ferry::detail::kMaxHeadDim / 2];
  double inv_freq[ferry::detail::kMaxHeadDim / 2];
  for (int32_t a = 0, p = 0; a < n_axes; ++a)
    for (int32_t i = 0; i < axes_dim[a] / 2; ++i, ++p) {
      axis_of[p] = a;
      inv_freq[p] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / axes_dim[a]);
    }
  for_range(n_tokens, n_head * head_dim, [&](int64_t t0, int64_t t1) {
    float cs[ferry::detail::kMaxHeadDim / 2], sn[ferry::detail::kMaxHeadDim / 2];
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t p = 0; p < half; ++p) {
        const double angle = static_cast<double>(positions[t * n_axes + axis_of[p]]) * inv_freq[p];
        cs[p] = static_cast<float>(std::cos(angle));
        sn[p] = static_cast<float>(std::sin(angle));
      }
      for (int64_t h = 0; h < n_head; ++h)
        rotate_pairs(x + (t * n_head + h) * head_dim, half, cs, sn, RopeMode::ADJACENT);
    }
  });
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  ferry::detail::check_rows("cpu::silu_mul", 1, n);
  for_elements(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  });
}

void gelu_tanh(const float* x, float* y, int64_t n) {
  ferry::detail::check_rows("cpu::gelu_tanh", 1, n);
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for_elements(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      // 0.5·v·(1 + tanh(u)) written as v / (1 + e^(-2u)): no cancellation in 1 + tanh(u) for negative v.
      const float v = x[i];
      y[i] = v / (1.0f + std::exp(-2.0f * kSqrt2OverPi * (v + 0.044715f * v * v * v)));
    }
  });
}

void add(const float* a, const float* b, float* y, int64_t n) {
  ferry::detail::check_rows("cpu::add", 1, n);
  for_elements(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
  });
}

void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) {
  ferry::detail::check_rows("cpu::modulate", rows, n);
  for_range(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * (1.0f + scale[i]) + shift[i];
  });
}

void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) {
  ferry::detail::check_rows("cpu::add_bias", rows, n);
  for_range(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] + bias[i];
  });
}

void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) {
  ferry::detail::check_rows("cpu::gated_add", rows, n);
  for_range(rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i = 0; i < n; ++i) residual[r * n + i] += gate[i] * x[r * n + i];
  });
}

void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out) {
  ferry::detail::check_embedding("cpu::embedding_lookup", table, ids, n_tokens, out);
  const uint64_t rb = row_bytes(table.type, table.n_cols);
  const auto* base = static_cast<const uint8_t*>(table.data);
  for_range(n_tokens, table.n_cols, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      detail::dequantize_serial(table.type, base + static_cast<uint64_t>(ids[t]) * rb, out + t * table.n_cols,
                                table.n_cols);
  });
}

}  // namespace ferry::cpu
