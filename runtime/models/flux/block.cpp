#include "ferry/models/flux/block.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/kernels/device_sizing.hpp"

namespace ferry {
namespace {

// Query rows per attention chunk on the GPU: the score matrix of one chunk is heads x rows x tokens floats.
constexpr int64_t kAttentionChunkRows = 256;
constexpr size_t kScratchAlignFloats = device_sizing::kScratchAlign / sizeof(float);

size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

AttentionShape attention_shape(const FluxConfig& c, int64_t n_tokens) {
  return AttentionShape{n_tokens,   n_tokens, c.n_head, c.n_head,
                        c.head_dim, 0,        false,    1.0f / std::sqrt(static_cast<float>(c.head_dim))};
}

// The most any step of up to n_tokens needs: a few queries take the split-KV decode path, whose partials do not shrink
// with the token count as the chunked path's scores do.
size_t attention_bytes(const FluxConfig& c, int64_t n_tokens) {
  auto at = [&](int64_t t) {
    return device_sizing::attention_scratch_bytes(attention_shape(c, t), std::min(t, kAttentionChunkRows));
  };
  size_t most = at(n_tokens);
  for (int64_t t = 1; t < std::min<int64_t>(n_tokens, device_sizing::kAttentionDecodeMaxQueries + 1); ++t)
    most = std::max(most, at(t));
  return round_up(most, device_sizing::kScratchAlign);
}

// Floats per token of the region that holds xn, q, k, v and the FP16 K and V until attention, and linear2's input
// [attn | gelu(mlp)] after it (single blocks): 5 h for Flux's proportions (mlp_hidden = 4 h) either way.
int64_t shared_width(const FluxConfig& c) { return std::max(5 * c.hidden, c.hidden + c.mlp_hidden); }

size_t buffer_floats(const FluxConfig& c, int64_t T) {
  // the shared region, attn and proj [T, h], mlp [T, mlp_hidden], the modulation vectors of both streams
  return static_cast<size_t>(T * (shared_width(c) + 2 * c.hidden + c.mlp_hidden) + 12 * c.hidden);
}

// A linear's output rows [first, first + n) as a matrix of their own: rows are consecutive in GGML layout.
QuantMatrixView rows_of(const QuantMatrixView& w, int64_t first, int64_t n) {
  const uint64_t stride = row_bytes(w.type, w.n_cols);
  const auto* base = static_cast<const std::byte*>(w.data);
  return QuantMatrixView{w.type, base == nullptr ? nullptr : base + stride * static_cast<uint64_t>(first), w.n_cols, n};
}

// y [n, out] = x · Wᵀ + b.
void linear(Ops& ops, const FluxLinear& l, const float* x, int64_t n, float* y) {
  ops.matmul(l.weight, x, n, y);
  ops.add_bias(y, l.bias, y, n, l.weight.n_rows);
}

// Several slices of one linear's outputs (qkv, linear1) reading the same x: one batched launch, then the biases.
void split_linear(Ops& ops, const FluxLinear& l, std::span<const int64_t> widths, const float* x, int64_t n,
                  std::span<float* const> ys) {
  std::vector<QuantMatrixView> parts;
  int64_t first = 0;
  for (int64_t width : widths) {
    parts.push_back(rows_of(l.weight, first, width));
    first += width;
  }
  ops.matmul_batch(parts, x, n, ys);
  first = 0;
  for (size_t i = 0; i < widths.size(); ++i) {
    ops.add_bias(ys[i], l.bias + first, ys[i], n, widths[i]);
    first += widths[i];
  }
}

// The modulation vectors of one stream: Linear(SiLU(vec)) as `count` consecutive [hidden] vectors.
void modulation(Ops& ops, const FluxLinear& l, const FluxStepView& step, float* mod) {
  linear(ops, l, step.silu_vec, 1, mod);
}

// LayerNorm then (1 + scale) * x + shift, rows of x into y.
void norm_modulate(Ops& ops, const FluxConfig& c, const float* x, const float* shift, const float* scale, float* y,
                   int64_t rows) {
  ops.layer_norm(x, y, rows, c.hidden, c.eps);
  ops.modulate(y, shift, scale, y, rows, c.hidden);
}

// q and k (all T rows) normalised per head already: RoPE, K and V to FP16, the joint attention into b.attn.
void joint_attention(Ops& ops, const FluxConfig& c, const FluxStepView& step, const FluxBlockBuffers& b) {
  const int64_t T = step.n_tokens(), h = c.hidden;
  ops.rope_multi_axis(b.q, T, c.n_head, c.head_dim, step.positions, c.axes_dim, c.theta);
  ops.rope_multi_axis(b.k, T, c.n_head, c.head_dim, step.positions, c.axes_dim, c.theta);
  ops.store_kv(b.k, b.v, b.k16, b.v16, T, 0, h, T);
  ops.attention(attention_shape(c, T), b.q, b.k16, b.v16, b.attn, b.attention);
}

void check_step(const FluxStepView& step, const char* what) {
  if (step.n_txt < 0 || step.n_img < 1 || step.silu_vec == nullptr || step.positions == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, std::string(what) + ": a step of " + std::to_string(step.n_txt) +
                                              " text and " + std::to_string(step.n_img) +
                                              " image tokens (at least one image token, and the conditioning)");
}

}  // namespace

size_t FluxBlockBuffers::workspace_floats(const FluxConfig& c, int64_t T, Device device) {
  const size_t buffers = buffer_floats(c, T);
  if (device == Device::CPU) return buffers;
  return round_up(buffers, kScratchAlignFloats) + attention_bytes(c, T) / sizeof(float);
}

FluxBlockBuffers FluxBlockBuffers::carve(const FluxConfig& c, int64_t T, Device device, float* ws) {
  FluxBlockBuffers b{};
  float* p = ws;
  auto take = [&](int64_t floats) {
    float* r = p;
    p += floats;
    return r;
  };
  const int64_t h = c.hidden, m = c.mlp_hidden;
  float* shared = take(T * shared_width(c));
  b.xn = shared;
  b.q = shared + T * h;
  b.k = shared + 2 * T * h;
  b.v = shared + 3 * T * h;
  b.k16 = reinterpret_cast<uint16_t*>(shared + 4 * T * h);  // K then V, T x h halves each
  b.v16 = b.k16 + T * h;
  b.cat = shared;  // written only after attention, when everything above is dead
  b.attn = take(T * h);
  b.proj = take(T * h);
  b.mlp = take(T * m);
  b.mod = take(12 * h);
  if (device == Device::GPU) {
    float* scratch = ws + round_up(buffer_floats(c, T), kScratchAlignFloats);
    b.attention = {reinterpret_cast<std::byte*>(scratch), attention_bytes(c, T)};
  }
  return b;
}

void flux_double_block_forward(Ops& ops, const FluxConfig& c, const FluxDoubleWeights& w, const FluxStepView& step,
                               const FluxBlockBuffers& b, float* x) {
  check_step(step, "flux double block");
  const int64_t h = c.hidden, m = c.mlp_hidden;
  struct Stream {
    const FluxStreamWeights& w;
    int64_t first, rows;
    float* mod;  // shift1, scale1, gate1, shift2, scale2, gate2
  };
  const Stream streams[] = {{w.txt, 0, step.n_txt, b.mod}, {w.img, step.n_txt, step.n_img, b.mod + 6 * h}};
  for (const Stream& s : streams) {
    if (s.rows == 0) continue;
    const int64_t o = s.first * h;
    modulation(ops, s.w.mod, step, s.mod);
    norm_modulate(ops, c, x + o, s.mod, s.mod + h, b.xn + o, s.rows);
    const int64_t widths[] = {h, h, h};
    float* const outs[] = {b.q + o, b.k + o, b.v + o};
    split_linear(ops, s.w.qkv, widths, b.xn + o, s.rows, outs);
    ops.rms_norm(b.q + o, s.w.q_scale, b.q + o, s.rows * c.n_head, c.head_dim, c.eps);
    ops.rms_norm(b.k + o, s.w.k_scale, b.k + o, s.rows * c.n_head, c.head_dim, c.eps);
  }
  joint_attention(ops, c, step, b);
  for (const Stream& s : streams) {
    if (s.rows == 0) continue;
    const int64_t o = s.first * h;
    linear(ops, s.w.proj, b.attn + o, s.rows, b.proj + o);
    ops.gated_add(x + o, s.mod + 2 * h, b.proj + o, s.rows, h);
    norm_modulate(ops, c, x + o, s.mod + 3 * h, s.mod + 4 * h, b.xn + o, s.rows);
    float* hidden = b.mlp + s.first * m;
    linear(ops, s.w.mlp0, b.xn + o, s.rows, hidden);
    ops.gelu_tanh(hidden, hidden, s.rows * m);
    linear(ops, s.w.mlp2, hidden, s.rows, b.proj + o);
    ops.gated_add(x + o, s.mod + 5 * h, b.proj + o, s.rows, h);
  }
}

void flux_single_block_forward(Ops& ops, const FluxConfig& c, const FluxSingleWeights& w, const FluxStepView& step,
                               const FluxBlockBuffers& b, float* x) {
  check_step(step, "flux single block");
  const int64_t h = c.hidden, m = c.mlp_hidden, T = step.n_tokens();
  modulation(ops, w.modulation, step, b.mod);  // shift, scale, gate
  norm_modulate(ops, c, x, b.mod, b.mod + h, b.xn, T);
  const int64_t widths[] = {h, h, h, m};
  float* const outs[] = {b.q, b.k, b.v, b.mlp};
  split_linear(ops, w.linear1, widths, b.xn, T, outs);
  ops.rms_norm(b.q, w.q_scale, b.q, T * c.n_head, c.head_dim, c.eps);
  ops.rms_norm(b.k, w.k_scale, b.k, T * c.n_head, c.head_dim, c.eps);
  joint_attention(ops, c, step, b);
  ops.gelu_tanh(b.mlp, b.mlp, T * m);
  ops.copy_rows(b.attn, h, b.cat, h + m, T, h);
  ops.copy_rows(b.mlp, m, b.cat + h, h + m, T, m);
  linear(ops, w.linear2, b.cat, T, b.proj);
  ops.gated_add(x, b.mod + 2 * h, b.proj, T, h);
}

void flux_text_input(Ops& ops, const FluxConfig& c, const FluxLinear& txt_in, const float* txt, int64_t n_txt,
                     float* x) {
  if (txt_in.weight.n_cols != c.context_in_dim || txt_in.weight.n_rows != c.hidden)
    fail(ErrorCategory::INVALID_ARGUMENT, "flux txt_in: a " + std::to_string(txt_in.weight.n_cols) + " -> " +
                                              std::to_string(txt_in.weight.n_rows) + " linear for a model of width " +
                                              std::to_string(c.hidden));
  if (n_txt > 0) linear(ops, txt_in, txt, n_txt, x);
}

void flux_input_forward(Ops& ops, const FluxConfig& c, const FluxLinear& img_in, const FluxStepView& step, float* x,
                        float* scratch) {
  check_step(step, "flux input layer");
  float* img = x + step.n_txt * c.hidden;
  ops.copy_rows(img, c.hidden, scratch, c.in_channels, step.n_img, c.in_channels);
  linear(ops, img_in, scratch, step.n_img, img);
}

void flux_final_forward(Ops& ops, const FluxConfig& c, const FluxLinear& mod, const FluxLinear& out_linear,
                        const FluxStepView& step, const float* x, float* scratch, float* out) {
  check_step(step, "flux final layer");
  const int64_t h = c.hidden;
  float* shift_scale = scratch;  // the reference chunks adaLN's output into shift, then scale
  float* xn = scratch + 2 * h;
  linear(ops, mod, step.silu_vec, 1, shift_scale);
  norm_modulate(ops, c, x + step.n_txt * h, shift_scale, shift_scale + h, xn, step.n_img);
  linear(ops, out_linear, xn, step.n_img, out);
}

void flux_timestep_embedding(float t, int64_t dim, float* out) {
  const int64_t half = dim / 2;
  const double scaled = 1000.0 * static_cast<double>(t);
  for (int64_t i = 0; i < half; ++i) {
    const double arg = scaled * std::exp(-std::log(10000.0) * static_cast<double>(i) / static_cast<double>(half));
    out[i] = static_cast<float>(std::cos(arg));
    out[half + i] = static_cast<float>(std::sin(arg));
  }
}

std::vector<float> flux_position_ids(int64_t n_txt, int64_t rows, int64_t cols) {
  std::vector<float> ids(static_cast<size_t>((n_txt + rows * cols) * 3), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float* id = ids.data() + (n_txt + i * cols + j) * 3;
      id[1] = static_cast<float>(i);
      id[2] = static_cast<float>(j);
    }
  return ids;
}

void flux_conditioning(Ops& ops, const FluxConfig& c, const FluxWeights& w, float timestep, float guidance,
                       const float* y, float* silu_vec) {
  if (ops.device() != Device::CPU)
    fail(ErrorCategory::INVALID_ARGUMENT, "flux conditioning: runs on the host, with CPU ops");
  const int64_t h = c.hidden;
  std::vector<float> emb(static_cast<size_t>(c.timestep_dim)), hidden(static_cast<size_t>(h)),
      part(static_cast<size_t>(h)), vec(static_cast<size_t>(h), 0.0f);
  auto silu = [](float* v, int64_t n) {
    for (int64_t i = 0; i < n; ++i) v[i] = v[i] / (1.0f + std::exp(-v[i]));
  };
  auto embed = [&](const FluxMlpEmbedder& e, const float* in) {  // vec += out_layer(SiLU(in_layer(in)))
    linear(ops, e.in_layer, in, 1, hidden.data());
    silu(hidden.data(), h);
    linear(ops, e.out_layer, hidden.data(), 1, part.data());
    ops.add(vec.data(), part.data(), vec.data(), h);
  };
  flux_timestep_embedding(timestep, c.timestep_dim, emb.data());
  embed(w.time_in, emb.data());
  if (c.has_guidance) {
    flux_timestep_embedding(guidance, c.timestep_dim, emb.data());
    embed(w.guidance_in, emb.data());
  }
  embed(w.vector_in, y);
  std::copy(vec.begin(), vec.end(), silu_vec);
  silu(silu_vec, h);
}

}  // namespace ferry
