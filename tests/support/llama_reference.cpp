#include "support/llama_reference.hpp"

#include <cmath>

#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry::test {
namespace {

using Matrix = std::vector<double>;  // row-major

Matrix dequant(const QuantMatrixView& m) {
  std::vector<float> f(static_cast<size_t>(m.n_rows * m.n_cols));
  const uint64_t rb = row_bytes(m.type, m.n_cols);
  for (int64_t r = 0; r < m.n_rows; ++r)
    ref::dequantize(m.type, static_cast<const uint8_t*>(m.data) + r * rb, f.data() + r * m.n_cols, m.n_cols);
  return Matrix(f.begin(), f.end());
}

// y[t][n] = sum_k W[n][k] x[t][k]
Matrix linear(const Matrix& w, int64_t n_rows, int64_t n_cols, const Matrix& x, int64_t T) {
  Matrix y(static_cast<size_t>(T * n_rows));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < n_rows; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < n_cols; ++k) acc += w[n * n_cols + k] * x[t * n_cols + k];
      y[t * n_rows + n] = acc;
    }
  return y;
}

Matrix rms_norm(const Matrix& x, const float* weight, int64_t T, int64_t n, double eps) {
  Matrix y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[t * n + i] * x[t * n + i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) y[t * n + i] = x[t * n + i] * inv * weight[i];
  }
  return y;
}

// Rotates the pairs (2i, 2i + 1) (llama as converted) or (i, i + d/2) (qwen: the weights as trained).
void rope(Matrix& x, int64_t T, int64_t heads, int64_t hd, double base, bool adjacent) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double theta = t * std::pow(base, -2.0 * i / hd);
        double& a = x[(t * heads + h) * hd + (adjacent ? 2 * i : i)];
        double& b = x[(t * heads + h) * hd + (adjacent ? 2 * i + 1 : i + hd / 2)];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(theta) - b0 * std::sin(theta);
        b = a0 * std::sin(theta) + b0 * std::cos(theta);
      }
}

void add_bias(Matrix& x, const float* bias, int64_t T, int64_t n) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) x[t * n + i] += bias[i];
}

double fp16_round(double v) { return fp16_to_fp32(fp32_to_fp16(static_cast<float>(v))); }

}  // namespace

std::vector<double> llama_reference_logits(const LlamaConfig& c, const LlamaWeights& w,
                                           const std::vector<int32_t>& tokens) {
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t E = c.n_embd, hd = c.head_dim(), qw = c.n_head * hd, kvw = c.n_head_kv * hd;
  const int64_t group = c.n_head / c.n_head_kv;
  const bool adjacent = c.arch == LlamaArch::LLAMA || c.arch == LlamaArch::MISTRAL;
  const Matrix embd = dequant(w.token_embd);
  Matrix x(static_cast<size_t>(T * E));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < E; ++i) x[t * E + i] = embd[tokens[t] * E + i];

  for (const LlamaLayerWeights& l : w.layers) {
    Matrix xn = rms_norm(x, l.attn_norm, T, E, c.rms_eps);
    Matrix q = linear(dequant(l.wq), qw, E, xn, T);
    Matrix k = linear(dequant(l.wk), kvw, E, xn, T);
    Matrix v = linear(dequant(l.wv), kvw, E, xn, T);
    if (c.arch == LlamaArch::QWEN2) {
      add_bias(q, l.bq, T, qw);
      add_bias(k, l.bk, T, kvw);
      add_bias(v, l.bv, T, kvw);
    }
    if (c.arch == LlamaArch::QWEN3) {  // every head of every token normalised on its own
      q = rms_norm(q, l.q_norm, T * c.n_head, hd, c.rms_eps);
      k = rms_norm(k, l.k_norm, T * c.n_head_kv, hd, c.rms_eps);
    }
    rope(q, T, c.n_head, hd, c.rope_freq_base, adjacent);
    rope(k, T, c.n_head_kv, hd, c.rope_freq_base, adjacent);
    for (double& e : k) e = fp16_round(e);
    for (double& e : v) e = fp16_round(e);
    Matrix attn(static_cast<size_t>(T * qw));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < c.n_head; ++h) {
        const int64_t g = h / group;
        std::vector<double> score(t + 1);
        double mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += q[(t * c.n_head + h) * hd + i] * k[(s * c.n_head_kv + g) * hd + i];
          score[s] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, score[s]);
        }
        double z = 0;
        for (double& e : score) z += (e = std::exp(e - mx));
        for (int64_t i = 0; i < hd; ++i) {
          double acc = 0;
          for (int64_t s = 0; s <= t; ++s) acc += score[s] * v[(s * c.n_head_kv + g) * hd + i];
          attn[(t * c.n_head + h) * hd + i] = acc / z;
        }
      }
    const Matrix o = linear(dequant(l.wo), E, qw, attn, T);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    xn = rms_norm(x, l.ffn_norm, T, E, c.rms_eps);
    Matrix gate = linear(dequant(l.w_gate), c.n_ff, E, xn, T);
    const Matrix up = linear(dequant(l.w_up), c.n_ff, E, xn, T);
    for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    const Matrix down = linear(dequant(l.w_down), E, c.n_ff, gate, T);
    for (size_t i = 0; i < x.size(); ++i) x[i] += down[i];
  }
  const Matrix xn = rms_norm(x, w.output_norm, T, E, c.rms_eps);
  return linear(dequant(w.output), c.n_vocab, E, xn, T);
}

}  // namespace ferry::test
