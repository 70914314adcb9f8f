#include "support/flux_reference.hpp"

#include <algorithm>

#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "ferry/models/flux/block.hpp"
#include "support/random.hpp"

namespace ferry::test {
namespace {

using Matrix = std::vector<double>;  // row-major

constexpr double kPi = 3.14159265358979323846;

Matrix dequant(const QuantMatrixView& m) {
  std::vector<float> f(static_cast<size_t>(m.n_rows * m.n_cols));
  const uint64_t rb = row_bytes(m.type, m.n_cols);
  for (int64_t r = 0; r < m.n_rows; ++r)
    ref::dequantize(m.type, static_cast<const uint8_t*>(m.data) + r * rb, f.data() + r * m.n_cols, m.n_cols);
  return Matrix(f.begin(), f.end());
}

// nn.Linear: y[t][n] = sum_k W[n][k] x[t][k] + b[n].
Matrix linear(const FluxLinear& l, const Matrix& x, int64_t T) {
  const Matrix w = dequant(l.weight);
  const int64_t rows = l.weight.n_rows, cols = l.weight.n_cols;
  Matrix y(static_cast<size_t>(T * rows));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < rows; ++n) {
      double acc = l.bias[n];
      for (int64_t k = 0; k < cols; ++k) acc += w[n * cols + k] * x[t * cols + k];
      y[t * rows + n] = acc;
    }
  return y;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// nn.GELU(approximate="tanh").
double gelu_tanh(double v) { return 0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / kPi) * (v + 0.044715 * v * v * v))); }

Matrix mlp_embedder(const FluxMlpEmbedder& e, const Matrix& x) {
  Matrix h = linear(e.in_layer, x, 1);
  for (double& v : h) v = silu(v);
  return linear(e.out_layer, h, 1);
}

// timestep_embedding(t, dim) with time_factor 1000: [cos(args) | sin(args)].
Matrix timestep_embedding(double t, int64_t dim) {
  const int64_t half = dim / 2;
  Matrix out(static_cast<size_t>(dim));
  for (int64_t i = 0; i < half; ++i) {
    const double freq = std::exp(-std::log(10000.0) * static_cast<double>(i) / static_cast<double>(half));
    const double arg = 1000.0 * t * freq;
    out[i] = std::cos(arg);
    out[half + i] = std::sin(arg);
  }
  return out;
}

// nn.LayerNorm(elementwise_affine=False, eps=1e-6) then (1 + scale) * x + shift.
Matrix modulated_norm(const Matrix& x, int64_t T, int64_t n, const double* shift, const double* scale, double eps) {
  Matrix y(static_cast<size_t>(T * n));
  for (int64_t t = 0; t < T; ++t) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < n; ++i) mean += x[t * n + i];
    mean /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) var += (x[t * n + i] - mean) * (x[t * n + i] - mean);
    var /= static_cast<double>(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < n; ++i) y[t * n + i] = (1.0 + scale[i]) * ((x[t * n + i] - mean) * inv) + shift[i];
  }
  return y;
}

// QKNorm: RMSNorm per head (eps 1e-6) with the learned scale.
void rms_norm_heads(Matrix& x, int64_t rows, int64_t hd, const float* scale, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < hd; ++i) ss += x[r * hd + i] * x[r * hd + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(hd) + eps);
    for (int64_t i = 0; i < hd; ++i) x[r * hd + i] = x[r * hd + i] * inv * scale[i];
  }
}

// EmbedND + apply_rope: axis a covers axes_dim[a] dimensions of each head; pair (2i, 2i + 1) of the axis turns by
// ids[a] * theta^(-2i / axes_dim[a]).
void rope(Matrix& x, int64_t T, int64_t heads, int64_t hd, const std::vector<float>& ids, const FluxConfig& c) {
  const auto n_axes = static_cast<int64_t>(c.axes_dim.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      double* v = x.data() + (t * heads + h) * hd;
      int64_t offset = 0;
      for (int64_t a = 0; a < n_axes; ++a) {
        const int64_t dim = c.axes_dim[a];
        for (int64_t i = 0; i < dim / 2; ++i) {
          const double omega = 1.0 / std::pow(static_cast<double>(c.theta), 2.0 * static_cast<double>(i) / dim);
          const double angle = ids[t * n_axes + a] * omega;
          double& x0 = v[offset + 2 * i];
          double& x1 = v[offset + 2 * i + 1];
          const double a0 = x0, b0 = x1;
          x0 = std::cos(angle) * a0 - std::sin(angle) * b0;
          x1 = std::sin(angle) * a0 + std::cos(angle) * b0;
        }
        offset += dim;
      }
    }
}

double fp16_round(double v) { return fp16_to_fp32(fp32_to_fp16(static_cast<float>(v))); }

// scaled_dot_product_attention over all T tokens (no mask), q/k/v [T, heads * hd] → [T, heads * hd].
Matrix attention(const Matrix& q, Matrix k, Matrix v, int64_t T, int64_t heads, int64_t hd) {
  for (double& e : k) e = fp16_round(e);
  for (double& e : v) e = fp16_round(e);
  const int64_t w = heads * hd;
  Matrix out(static_cast<size_t>(T * w));
  std::vector<double> score(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      double mx = -INFINITY;
      for (int64_t s = 0; s < T; ++s) {
        double dot = 0;
        for (int64_t i = 0; i < hd; ++i) dot += q[t * w + h * hd + i] * k[s * w + h * hd + i];
        score[s] = dot / std::sqrt(static_cast<double>(hd));
        mx = std::max(mx, score[s]);
      }
      double z = 0;
      for (double& e : score) z += (e = std::exp(e - mx));
      for (int64_t i = 0; i < hd; ++i) {
        double acc = 0;
        for (int64_t s = 0; s < T; ++s) acc += score[s] * v[s * w + h * hd + i];
        out[t * w + h * hd + i] = acc / z;
      }
    }
  return out;
}

// Columns [first, first + n) of x [T, width].
Matrix columns(const Matrix& x, int64_t T, int64_t width, int64_t first, int64_t n) {
  Matrix y(static_cast<size_t>(T * n));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] = x[t * width + first + i];
  return y;
}

// Rows [first, first + n) of x [., width].
Matrix rows(const Matrix& x, int64_t width, int64_t first, int64_t n) {
  return Matrix(x.begin() + first * width, x.begin() + (first + n) * width);
}

struct StreamOut {
  Matrix q, k, v, mod;
};

}  // namespace

FluxReferenceInputs make_flux_inputs(const FluxConfig& c, int64_t width, int64_t height, int64_t n_txt, uint64_t seed) {
  FluxReferenceInputs in;
  const int64_t rows = height / 16, cols = width / 16;
  in.n_txt = n_txt;
  in.n_img = rows * cols;
  in.img = random_floats(static_cast<size_t>(in.n_img * c.in_channels), seed, -2.0f, 2.0f);
  in.txt = random_floats(static_cast<size_t>(n_txt * c.context_in_dim), seed + 1, -1.0f, 1.0f);
  in.y = random_floats(static_cast<size_t>(c.vec_in_dim), seed + 2, -1.0f, 1.0f);
  in.ids = flux_position_ids(n_txt, rows, cols);
  in.timestep = 0.73f;
  in.guidance = 3.5f;
  return in;
}

std::vector<double> flux_reference_forward(const FluxConfig& c, const FluxWeights& w, const FluxReferenceInputs& in) {
  const int64_t H = c.hidden, M = c.mlp_hidden, hd = c.head_dim, heads = c.n_head;
  const int64_t n_txt = in.n_txt, n_img = in.n_img, T = n_txt + n_img;
  const double eps = c.eps;

  Matrix img = linear(w.img_in, Matrix(in.img.begin(), in.img.end()), n_img);
  Matrix txt = linear(w.txt_in, Matrix(in.txt.begin(), in.txt.end()), n_txt);
  Matrix vec = mlp_embedder(w.time_in, timestep_embedding(in.timestep, c.timestep_dim));
  if (c.has_guidance) {
    const Matrix g = mlp_embedder(w.guidance_in, timestep_embedding(in.guidance, c.timestep_dim));
    for (int64_t i = 0; i < H; ++i) vec[i] += g[i];
  }
  {
    const Matrix y = mlp_embedder(w.vector_in, Matrix(in.y.begin(), in.y.end()));
    for (int64_t i = 0; i < H; ++i) vec[i] += y[i];
  }
  Matrix silu_vec = vec;
  for (double& v : silu_vec) v = silu(v);

  for (const FluxDoubleWeights& b : w.double_blocks) {
    // Modulation(double=True): shift, scale, gate of mod1 then mod2.
    auto prepare = [&](const FluxStreamWeights& s, const Matrix& x, int64_t n) {
      StreamOut o;
      o.mod = linear(s.mod, silu_vec, 1);
      const Matrix xm = modulated_norm(x, n, H, o.mod.data(), o.mod.data() + H, eps);
      const Matrix qkv = linear(s.qkv, xm, n);  // "B L (K H D) -> K B H L D"
      o.q = columns(qkv, n, 3 * H, 0, H);
      o.k = columns(qkv, n, 3 * H, H, H);
      o.v = columns(qkv, n, 3 * H, 2 * H, H);
      rms_norm_heads(o.q, n * heads, hd, s.q_scale, eps);
      rms_norm_heads(o.k, n * heads, hd, s.k_scale, eps);
      return o;
    };
    const StreamOut ti = prepare(b.txt, txt, n_txt);
    const StreamOut im = prepare(b.img, img, n_img);
    auto cat = [](const Matrix& a, const Matrix& b2) {
      Matrix r(a);
      r.insert(r.end(), b2.begin(), b2.end());
      return r;
    };
    Matrix q = cat(ti.q, im.q), k = cat(ti.k, im.k);
    const Matrix v = cat(ti.v, im.v);
    rope(q, T, heads, hd, in.ids, c);
    rope(k, T, heads, hd, in.ids, c);
    const Matrix attn = attention(q, k, v, T, heads, hd);
    auto finish = [&](const FluxStreamWeights& s, const StreamOut& o, Matrix& x, int64_t first, int64_t n) {
      const Matrix proj = linear(s.proj, rows(attn, H, first, n), n);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < H; ++i) x[t * H + i] += o.mod[2 * H + i] * proj[t * H + i];
      const Matrix xm = modulated_norm(x, n, H, o.mod.data() + 3 * H, o.mod.data() + 4 * H, eps);
      Matrix hidden = linear(s.mlp0, xm, n);
      for (double& e : hidden) e = gelu_tanh(e);
      const Matrix out = linear(s.mlp2, hidden, n);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < H; ++i) x[t * H + i] += o.mod[5 * H + i] * out[t * H + i];
    };
    finish(b.img, im, img, n_txt, n_img);
    finish(b.txt, ti, txt, 0, n_txt);
  }

  Matrix x = txt;  // torch.cat((txt, img), 1)
  x.insert(x.end(), img.begin(), img.end());
  for (const FluxSingleWeights& b : w.single_blocks) {
    const Matrix mod = linear(b.modulation, silu_vec, 1);  // shift, scale, gate
    const Matrix xm = modulated_norm(x, T, H, mod.data(), mod.data() + H, eps);
    const Matrix l1 = linear(b.linear1, xm, T);  // split [3 * hidden, mlp_hidden]
    Matrix q = columns(l1, T, 3 * H + M, 0, H), k = columns(l1, T, 3 * H + M, H, H);
    const Matrix v = columns(l1, T, 3 * H + M, 2 * H, H);
    Matrix mlp = columns(l1, T, 3 * H + M, 3 * H, M);
    rms_norm_heads(q, T * heads, hd, b.q_scale, eps);
    rms_norm_heads(k, T * heads, hd, b.k_scale, eps);
    rope(q, T, heads, hd, in.ids, c);
    rope(k, T, heads, hd, in.ids, c);
    const Matrix attn = attention(q, k, v, T, heads, hd);
    Matrix joined(static_cast<size_t>(T * (H + M)));  // torch.cat((attn, mlp_act(mlp)), 2)
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < H; ++i) joined[t * (H + M) + i] = attn[t * H + i];
      for (int64_t i = 0; i < M; ++i) joined[t * (H + M) + H + i] = gelu_tanh(mlp[t * M + i]);
    }
    const Matrix out = linear(b.linear2, joined, T);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < H; ++i) x[t * H + i] += mod[2 * H + i] * out[t * H + i];
  }

  // LastLayer: shift, scale = adaLN_modulation(vec).chunk(2) (SiLU inside adaLN_modulation).
  const Matrix final_img = rows(x, H, n_txt, n_img);
  const Matrix mod = linear(w.final_mod, silu_vec, 1);
  const Matrix xm = modulated_norm(final_img, n_img, H, mod.data(), mod.data() + H, eps);
  return linear(w.final_linear, xm, n_img);
}

}  // namespace ferry::test
