// The unit the scheduler moves and runs: a layer of a model (a llama block, a Flux block, a test's synthetic layer).
// A layer declares the weights it needs as named tensors (host bytes + geometry) and what else it needs for a step of
// T tokens (workspace, KV cache, output); the scheduler decides where the bytes live (arena, staging slot, host) and
// calls forward() with views of them on the device the layer runs on and the Ops of that device. A layer is written
// once, over Ops: the same forward() runs on the CPU and on the GPU.
//
// The residual stream x [T, width] float32 goes in and comes out in place; anything else the layer needs per step
// comes from the workspace the scheduler reserved for it, so a step allocates nothing. Per-step inputs (the position
// of the first token, whether every token's output is wanted) come in the StepContext, the same for every layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "ferry/kernels/matrix.hpp"
#include "ferry/kernels/ops.hpp"

namespace ferry {

// One weight tensor: `view.data` points at its bytes in host memory (the mapped file or memory the model owns);
// F32/F16 vectors are views with n_rows = 1. A layer built only to be sized (from a file's header) has null data.
struct WeightTensor {
  std::string name;
  QuantMatrixView view;
};

uint64_t tensor_bytes(const QuantMatrixView& view);

// How a layer's tensors sit in one block (pinned-pool span, staging slot, resident block): back to back, each at a
// kArenaAlignment-aligned offset, so a layer moves in one copy and every tensor is aligned for vector loads.
struct LayerLayout {
  std::vector<uint64_t> offsets;
  uint64_t bytes = 0;  // aligned
};
LayerLayout layer_layout(std::span<const WeightTensor> tensors);
// The tensors' views re-pointed at a block laid out by layer_layout starting at `block`.
std::vector<QuantMatrixView> views_in_block(std::span<const WeightTensor> tensors, const LayerLayout& layout,
                                            const void* block);

// One sequence's share of a step that runs several sequences together, each with its own KV cache (a server decoding
// its active requests in one pass over the weights): n_tokens consecutive rows of x, following the previous entry's.
struct StepSequence {
  int64_t slot = 0;  // which of the layer's KV caches (0 .. the number the layer was built for - 1)
  int64_t pos0 = 0;  // the position of the entry's first token in its sequence
  int64_t n_tokens = 0;
};

// What one step is, for every layer of the stack.
struct StepContext {
  int64_t n_tokens = 0;
  int64_t pos0 = 0;         // position of the step's first token (layers with a KV cache)
  bool all_logits = false;  // the stack's output for every token, not only the last (perplexity, tests)
  // Per-step inputs every layer may read besides the residual stream (Flux: the conditioning vector, the RoPE
  // positions), in host memory, at most StackOptions::step_input_floats floats. The scheduler copies them once per
  // step to the device and hands each layer the copy on the device it runs on (LayerRun::inputs); the host span stays
  // readable by every layer (for scalars that steer the host side of forward()).
  std::span<const float> inputs;
  // Several sequences in one step (their n_tokens sum to n_tokens); empty: one sequence, cache 0, at pos0.
  std::span<const StepSequence> sequences;
  // > 0: the stack's output for the last logit_rows tokens (each sequence's last token placed at the end); 0: the
  // last token only. all_logits wins over it.
  int64_t logit_rows = 0;
};

// A byte range of a layer's KV cache.
struct KvRange {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// Where a layer runs this step: the device's ops and the memory the scheduler reserved for the layer there.
struct LayerRun {
  Ops* ops = nullptr;
  float* workspace = nullptr;  // workspace_floats(n_tokens, device) floats, contents undefined on entry
  size_t workspace_floats = 0;
  void* kv_cache = nullptr;       // kv_cache_bytes() bytes, this layer's own, on the device it runs on
  float* output = nullptr;        // output_floats(n_tokens) floats, for the layer that has an output
  const float* inputs = nullptr;  // StepContext::inputs on the device the layer runs on (null when there are none)
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual const std::string& name() const = 0;
  // The tensors the layer reads, in the order forward() receives their views. Host bytes stay valid while the layer
  // lives (the scheduler copies them at construction; CPU layers read them in place every step).
  virtual std::span<const WeightTensor> weights() const = 0;
  // Elements per token of the residual stream.
  virtual int64_t width() const = 0;
  // Float32 scratch for a step of up to n_tokens tokens on `device` (a workspace sized for T serves every smaller
  // step).
  virtual size_t workspace_floats(int64_t n_tokens, Device device) const = 0;
  // Per-layer KV cache (zero for layers without attention).
  virtual uint64_t kv_cache_bytes() const { return 0; }
  // The parts of the KV cache a step reads that it does not write (`reads`: earlier positions) and the parts it writes
  // (`writes`), appended: a PHASED layer keeps its cache in host memory, and its GPU steps move in only the first and
  // out only the second. Default: the whole cache, both ways (always correct, only slower).
  virtual void kv_cache_traffic(const StepContext& step, std::vector<KvRange>& reads,
                                std::vector<KvRange>& writes) const;
  // Floats the layer writes besides the residual stream (a model's logits); only the last layer of a stack may have
  // an output. The scheduler reserves it where the layer runs and hands it back after the step.
  virtual size_t output_floats(int64_t /*n_tokens*/) const { return 0; }
  // Indices into weights() of the matrices forward() passes to Ops::matmul / matmul_batch: on the GPU each may need
  // GEMM scratch. Default: every tensor of more than one row.
  virtual std::vector<size_t> matmul_weights() const;
  // The subset of matmul_weights() that forward() multiplies with one vector per step whatever the step's token count
  // (Flux's modulation linears act on the conditioning vector): they take the GEMV and need no GEMM scratch sized for
  // T tokens. Default: none.
  virtual std::vector<size_t> vector_matmul_weights() const { return {}; }
  // Per entry of matmul_weights(): how many of a step's n_tokens rows forward() multiplies that matrix with, for the
  // cost model to price each matrix at its own count (a Flux double block multiplies its img stream's matrices with
  // the image tokens and its txt stream's with the text tokens). Default: n_tokens, 1 for vector_matmul_weights().
  virtual std::vector<int64_t> matmul_tokens(int64_t n_tokens) const;

  // True when forward() enqueues the same device work for every step of the same token count, sequence entry and
  // logits request, and reads the step's position only through Ops::positions, store_kv and attention: the GPU engine
  // may then capture a decode step of the layer once (a CUDA graph) and replay it at later positions, the kernels
  // reading the position on the device. Default: false (every step is enqueued anew).
  virtual bool replayable() const { return false; }
  // The largest pos0 + n_tokens a step may have (the KV cache's rows): the engine replays no step beyond it, so that
  // forward() refuses it as it would any step.
  virtual int64_t position_limit() const { return std::numeric_limits<int64_t>::max(); }

  // x: [step.n_tokens, width()] on the device of run.ops, updated in place; weights: weights() re-pointed at memory
  // of that device.
  virtual void forward(std::span<const QuantMatrixView> weights, float* x, const StepContext& step,
                       const LayerRun& run) const = 0;
};

// Checks a forward() call's weights and workspace against what the layer declared; INTERNAL naming the layer.
void check_layer_call(const Layer& layer, std::span<const QuantMatrixView> weights, const StepContext& step,
                      const LayerRun& run);

}  // namespace ferry
