// Scalar reference transformer ops: the oracle for kernels/cpu and kernels/cuda. Every sum and every transcendental is
// evaluated in double and rounded to float once at the end, so the reference's own error (~1e-7 relative) is far
// below any tolerance a test sets for a fast kernel. Slow on purpose: plain loops, nothing clever.
#include "ferry/kernels/ref/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../cpu/op_checks.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry::ref {
namespace {

std::vector<float> dequantize_row(const QuantMatrixView& w, int64_t row) {
  std::vector<float> out(static_cast<size_t>(w.n_cols));
  const auto* base = static_cast<const uint8_t*>(w.data);
  dequantize(w.type, base + static_cast<uint64_t>(row) * row_bytes(w.type, w.n_cols), out.data(), w.n_cols);
  return out;
}

// Rotates the pair (a, b) by angle: (a cos - b sin, a sin + b cos).
void rotate(float& a, float& b, double angle) {
  const double c = std::cos(angle), s = std::sin(angle);
  const double x0 = a, x1 = b;
  a = static_cast<float>(x0 * c - x1 * s);
  b = static_cast<float>(x0 * s + x1 * c);
}

}  // namespace

void matmul(const QuantMatrixView& w, const float* x, int64_t n_tokens, float* y) {
  detail::check_matmul("ref::matmul", w, x, n_tokens, y);
  const int64_t k = w.n_cols;
  for (int64_t n = 0; n < w.n_rows; ++n) {
    const std::vector<float> row = dequantize_row(w, n);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double acc = 0.0;
      for (int64_t i = 0; i < k; ++i) acc += static_cast<double>(row[i]) * x[t * k + i];
      y[t * w.n_rows + n] = static_cast<float>(acc);
    }
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t rows, int64_t n, float eps) {
  detail::check_rows("ref::rms_norm", rows, n);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[r * n + i]) * x[r * n + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + eps);
    for (int64_t i = 0; i < n; ++i)
      y[r * n + i] = static_cast<float>(x[r * n + i] * inv * (weight ? static_cast<double>(weight[i]) : 1.0));
  }
}

void layer_norm(const float* x, float* y, int64_t rows, int64_t n, float eps) {
  detail::check_rows("ref::layer_norm", rows, n);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0.0;
    for (int64_t i = 0; i < n; ++i) mean += x[r * n + i];
    mean /= static_cast<double>(n);
    double var = 0.0;
    for (int64_t i = 0; i < n; ++i) var += (x[r * n + i] - mean) * (x[r * n + i] - mean);
    var /= static_cast<double>(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = static_cast<float>((x[r * n + i] - mean) * inv);
  }
}

void rope(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* positions, float freq_base,
          RopeMode mode) {
  detail::check_rope("ref::rope", n_tokens, n_head, head_dim);
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_head; ++h) {
      float* v = x + (t * n_head + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle =
            positions[t] * std::pow(static_cast<double>(freq_base), -2.0 * static_cast<double>(i) / head_dim);
        if (mode == RopeMode::ADJACENT)
          rotate(v[2 * i], v[2 * i + 1], angle);
        else
          rotate(v[i], v[i + half], angle);
      }
    }
  }
}

void rope_multi_axis(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const float* positions,
                     const int32_t* axes_dim, int32_t n_axes, float theta) {
  detail::check_rope_multi_axis("ref::rope_multi_axis", n_tokens, n_head, head_dim, axes_dim, n_axes);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_head; ++h) {
      float* v = x + (t * n_head + h) * head_dim;
      int64_t offset = 0;
      for (int32_t a = 0; a < n_axes; ++a) {
        const double pos = positions[t * n_axes + a];
        for (int64_t i = 0; i < axes_dim[a] / 2; ++i) {
          const double angle = pos * std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / axes_dim[a]);
          rotate(v[offset + 2 * i], v[offset + 2 * i + 1], angle);
        }
        offset += axes_dim[a];
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, float* y, int64_t n) {
  detail::check_rows("ref::silu_mul", 1, n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = gate[i];
    y[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void gelu_tanh(const float* x, float* y, int64_t n) {
  detail::check_rows("ref::gelu_tanh", 1, n);
  const double k = std::sqrt(2.0 / 3.14159265358979323846);
  for (int64_t i = 0; i < n; ++i) {
    // 0.5·v·(1 + tanh(u)) as v / (1 + e^(-2u)), the same function: 1 + tanh(u) cancels completely in double for
    // v < ~-6 (tanh(u) rounds to -1), which would make the oracle return 0 where the float kernels, using this form,
    // are right. Here every step keeps its relative precision, so the reference stays the more accurate side.
    const double v = x[i];
    const double u = k * (v + 0.044715 * v * v * v);
    y[i] = static_cast<float>(v / (1.0 + std::exp(-2.0 * u)));
  }
}

void add(const float* a, const float* b, float* y, int64_t n) {
  detail::check_rows("ref::add", 1, n);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(a[i]) + b[i]);
}

void modulate(const float* x, const float* shift, const float* scale, float* y, int64_t rows, int64_t n) {
  detail::check_rows("ref::modulate", rows, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      y[r * n + i] = static_cast<float>(static_cast<double>(x[r * n + i]) * (1.0 + scale[i]) + shift[i]);
}

void add_bias(const float* x, const float* bias, float* y, int64_t rows, int64_t n) {
  detail::check_rows("ref::add_bias", rows, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = static_cast<float>(static_cast<double>(x[r * n + i]) + bias[i]);
}

void gated_add(float* residual, const float* gate, const float* x, int64_t rows, int64_t n) {
  detail::check_rows("ref::gated_add", rows, n);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      residual[r * n + i] = static_cast<float>(residual[r * n + i] + static_cast<double>(gate[i]) * x[r * n + i]);
}

void attention(const AttentionShape& s, const float* q, const uint16_t* k, const uint16_t* v, float* out) {
  detail::check_attention("ref::attention", s);
  const int64_t d = s.head_dim;
  const int64_t group = s.n_head / s.n_kv_head;
  std::vector<double> scores(static_cast<size_t>(s.n_kv));
  std::vector<double> acc(static_cast<size_t>(d));
  for (int64_t i = 0; i < s.n_q; ++i) {
    const int64_t visible = s.causal ? s.q_pos0 + i + 1 : s.n_kv;
    for (int64_t h = 0; h < s.n_head; ++h) {
      const int64_t kvh = h / group;
      const float* qv = q + (i * s.n_head + h) * d;
      double max_score = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        const uint16_t* kv = k + (j * s.n_kv_head + kvh) * d;
        double dot = 0.0;
        for (int64_t e = 0; e < d; ++e) dot += static_cast<double>(qv[e]) * fp16_to_fp32(kv[e]);
        scores[j] = dot * s.scale;
        max_score = std::max(max_score, scores[j]);
      }
      double sum = 0.0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t j = 0; j < visible; ++j) {
        const double p = std::exp(scores[j] - max_score);
        sum += p;
        const uint16_t* vv = v + (j * s.n_kv_head + kvh) * d;
        for (int64_t e = 0; e < d; ++e) acc[e] += p * fp16_to_fp32(vv[e]);
      }
      float* o = out + (i * s.n_head + h) * d;
      for (int64_t e = 0; e < d; ++e) o[e] = static_cast<float>(acc[e] / sum);
    }
  }
}

void embedding_lookup(const QuantMatrixView& table, const int32_t* ids, int64_t n_tokens, float* out) {
  detail::check_embedding("ref::embedding_lookup", table, ids, n_tokens, out);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const std::vector<float> row = dequantize_row(table, ids[t]);
    std::copy(row.begin(), row.end(), out + t * table.n_cols);
  }
}

}  // namespace ferry::ref
