// The Flux computation, written once over Ops (the same source runs on the CPU and the GPU), following the published
// reference model (black-forest-labs/flux: model.py, modules/layers.py):
// - double block, per stream s in (txt, img): mod_s = Linear(SiLU(vec)) = shift1, scale1, gate1, shift2, scale2,
//   gate2; qkv of (1 + scale1) * LayerNorm(x_s) + shift1; q and k RMS-normalised per head with their scales; one
//   joint attention over txt ‖ img (txt first) with 3-axis RoPE; x_s += gate1 * proj(attn_s);
//   x_s += gate2 * mlp((1 + scale2) * LayerNorm(x_s) + shift2), mlp = Linear -> GELU(tanh) -> Linear;
// - single block over txt ‖ img: shift, scale, gate = Linear(SiLU(vec)); linear1 of the modulated LayerNorm gives
//   q, k, v and the MLP input; x += gate * linear2([attn | GELU(mlp)]);
// - final layer on the img rows: shift, scale = Linear(SiLU(vec)) (shift first); Linear((1 + scale) * LayerNorm(x)
//   + shift) to the 64 latent channels.
// LayerNorm has no affine and eps 1e-6; every linear has a bias. Attention K and V pass through FP16 (the Ops
// attention's operand format, as the KV cache of llama).
//
// The residual stream is x [n_txt + n_img, hidden]: the txt rows, then the img rows. Every block reads the same
// per-step conditioning: SiLU(vec) [hidden] (every consumer of vec applies SiLU first, so it is computed once) and the
// RoPE positions [n_txt + n_img, n_axes], both on the device of the ops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ferry/kernels/ops.hpp"
#include "ferry/models/flux/model.hpp"

namespace ferry {

// The per-step conditioning every block reads, on the device of the ops.
struct FluxStepView {
  int64_t n_txt = 0;
  int64_t n_img = 0;
  const float* silu_vec = nullptr;   // [hidden]
  const float* positions = nullptr;  // [n_txt + n_img, axes_dim.size()]
  int64_t n_tokens() const noexcept { return n_txt + n_img; }
};

// Activations of one block for up to n_tokens tokens, carved from one float workspace; on the GPU the attention
// scratch follows them.
struct FluxBlockBuffers {
  float *xn, *q, *k, *v;           // [T, hidden], dead after attention
  uint16_t *k16, *v16;             // [T, hidden] FP16: attention's K and V
  float* cat;                      // [T, hidden + mlp_hidden]: linear2's input (single blocks), over the buffers above
  float *attn, *proj;              // [T, hidden]
  float* mlp;                      // [T, mlp_hidden]
  float* mod;                      // [12 * hidden]: the modulation vectors of both streams
  std::span<std::byte> attention;  // GPU attention scratch; empty on the CPU

  static size_t workspace_floats(const FluxConfig& c, int64_t n_tokens, Device device);
  static FluxBlockBuffers carve(const FluxConfig& c, int64_t n_tokens, Device device, float* workspace);
};

// x [step.n_tokens(), hidden] updated in place.
void flux_double_block_forward(Ops& ops, const FluxConfig& c, const FluxDoubleWeights& w, const FluxStepView& step,
                               const FluxBlockBuffers& b, float* x);
void flux_single_block_forward(Ops& ops, const FluxConfig& c, const FluxSingleWeights& w, const FluxStepView& step,
                               const FluxBlockBuffers& b, float* x);

// The txt rows of x [n_txt, hidden] = txt_in(txt [n_txt, context_in_dim]). The text embeddings do not change between
// denoising steps, so a sampler computes this once.
void flux_text_input(Ops& ops, const FluxConfig& c, const FluxLinear& txt_in, const float* txt, int64_t n_txt,
                     float* x);
// The img rows of x: columns 0 .. in_channels - 1 hold the packed latents on entry; the row becomes img_in of them.
// `scratch` holds n_img x in_channels floats.
void flux_input_forward(Ops& ops, const FluxConfig& c, const FluxLinear& img_in, const FluxStepView& step, float* x,
                        float* scratch);
// out [n_img, in_channels] = the final layer on the img rows of x. `scratch` holds n_img x hidden + 2 x hidden floats.
void flux_final_forward(Ops& ops, const FluxConfig& c, const FluxLinear& modulation, const FluxLinear& linear,
                        const FluxStepView& step, const float* x, float* scratch, float* out);

// Host side, once per step: SiLU(vec), vec = time_in(emb(t)) + guidance_in(emb(guidance)) + vector_in(y), with the
// sinusoidal embedding of the reference (t * 1000, cos half first). Runs on `ops` (a CPU one: pointers are host).
void flux_conditioning(Ops& ops, const FluxConfig& c, const FluxWeights& w, float timestep, float guidance,
                       const float* y, float* silu_vec);
// The reference's timestep_embedding(t * 1000, dim): [cos(t' f_i) | sin(t' f_i)], f_i = 10000^(-i / (dim / 2)).
void flux_timestep_embedding(float t, int64_t dim, float* out);

// The reference's position ids: txt tokens (0, 0, 0), then image patch (i, j) of a rows x cols grid, row-major, as
// (0, i, j). [n_txt + rows * cols, 3] floats.
std::vector<float> flux_position_ids(int64_t n_txt, int64_t rows, int64_t cols);

}  // namespace ferry
