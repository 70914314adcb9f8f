// The llama computation, written once over Ops: a transformer block (pre-norm attention with RoPE and an FP16 KV cache,
// then a SwiGLU FFN, each added to the residual stream) and the head (final RMSNorm, output projection). The same
// functions run on the CPU (CpuOps) and the GPU (CudaOps); every pointer lives on the device of the ops.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ferry/kernels/ops.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/offload/layer.hpp"

namespace ferry {

// Per-step activations of one block for T tokens, carved from one float workspace; on the GPU the attention scratch
// follows them (attention_scratch_bytes).
struct LlamaBlockBuffers {
  float *xn, *q, *k, *v, *attn, *proj, *gate, *up;
  int32_t* positions;              // T token positions (one float's room each)
  std::span<std::byte> attention;  // device scratch of the GPU's attention paths; empty on the CPU
  // Floats of the buffers (without attention scratch) and of the whole workspace on `device` for steps of up to
  // n_tokens tokens with a cache of n_ctx positions.
  static size_t buffer_floats(const LlamaConfig& c, int64_t n_tokens);
  static size_t workspace_floats(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx, Device device);
  static LlamaBlockBuffers carve(const LlamaConfig& c, int64_t n_tokens, int64_t n_ctx, Device device,
                                 float* workspace);
};

// KV cache of one layer: n_ctx positions x n_embd_kv FP16 values (bit patterns) for K and for V.
struct LlamaKvView {
  uint16_t* k;
  uint16_t* v;
  int64_t n_ctx;
};

// x [n_tokens, n_embd] is updated in place: x += attention(rms_norm(x)); x += ffn(rms_norm(x)). Token t sits at
// position pos0 + t; its K and V are stored in the cache; attention sees positions 0 .. pos0 + t.
void llama_block_forward(Ops& ops, const LlamaConfig& c, const LlamaLayerWeights& w, const LlamaKvView& kv,
                         const LlamaBlockBuffers& b, float* x, int64_t n_tokens, int64_t pos0);

// The same for several sequences in one step: every matrix product runs once over all n_tokens rows (each weight read
// once for every sequence); RoPE, the cache writes and attention run per entry of `sequences`, entry i on
// caches[sequences[i].slot] at its own positions, so a token attends to its own sequence only. The entries run in
// order, and a sequence may have several entries (its later entries see the cache rows its earlier ones wrote).
// INVALID_ARGUMENT when the entries do not cover the n_tokens rows, name a cache that does not exist, or overflow one.
void llama_block_forward_sequences(Ops& ops, const LlamaConfig& c, const LlamaLayerWeights& w,
                                   std::span<const LlamaKvView> caches, const LlamaBlockBuffers& b, float* x,
                                   int64_t n_tokens, std::span<const StepSequence> sequences);

// logits [rows, n_vocab] of the last `rows` tokens of x [n_tokens, n_embd]; `normed` holds rows x n_embd floats.
void llama_head_forward(Ops& ops, const LlamaConfig& c, const float* output_norm, const QuantMatrixView& output,
                        const float* x, int64_t n_tokens, int64_t rows, float* normed, float* logits);

// Checks shared by every forward(): positions within the context, the logits buffer large enough, token ids inside
// the vocabulary. Throws INVALID_ARGUMENT with the numbers.
void check_forward_arguments(const LlamaConfig& c, int64_t n_ctx, std::span<const int32_t> tokens, int64_t pos0,
                             size_t logits_size, bool all_logits);

}  // namespace ferry
