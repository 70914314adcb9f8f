// The unit the scheduler moves and runs: a layer of a model (a llama block, a Flux block, or the synthetic layer of
// synthetic_stack.hpp). A layer declares the weights it needs as named tensors (host bytes + geometry); the scheduler
// decides where those bytes live (arena, staging slot, host) and hands the layer views of them on the device it runs
// on. The residual stream x [T, width] float32 goes in and comes out in place; anything else the layer needs per step
// comes from the workspace the scheduler reserved for it (workspace_floats), so a step allocates nothing.
//
// No CUDA header here: the GPU context carries opaque handles (cudaStream_t is CUstream_st*, cublasHandle_t is
// cublasContext*), so CPU-only code can include this and implement forward_cpu alone.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ferry/kernels/matrix.hpp"

struct CUstream_st;
struct cublasContext;

namespace ferry {

// One weight tensor: `view.data` points at its bytes in host memory (the mapped file or memory the model owns);
// F32/F16 vectors are views with n_rows = 1.
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

// What forward_gpu gets besides its weights and x. All pointers are device pointers into the arena.
struct GpuLayerContext {
  CUstream_st* stream = nullptr;        // the compute stream: enqueue everything here, never synchronize
  cublasContext* cublas = nullptr;      // bound to `stream`, workspace from the arena
  // The same arena workspace, for cuBLASLt calls (cuda::GemmScratch::workspace): every GEMM runs on `stream`, one after
  // another, so cuBLAS and cuBLASLt can share it.
  void* cublas_workspace = nullptr;
  size_t cublas_workspace_bytes = 0;
  void* fp16_weight_scratch = nullptr;  // __half elements: a tile of dequantized weight for dequant_gemm
  size_t fp16_weight_scratch_elems = 0;
  void* fp16_activation_scratch = nullptr;  // __half elements: x converted to FP16 for dequant_gemm
  size_t fp16_activation_scratch_elems = 0;
  float* workspace = nullptr;  // workspace_floats(n_tokens) floats, contents undefined on entry
  size_t workspace_floats = 0;
  void* kv_cache = nullptr;  // kv_cache_bytes() bytes, this layer's own
  float* output = nullptr;   // output_floats(n_tokens) floats (device), for the layer that has an output
};

// What forward_cpu gets: host pointers. Runs inside the scheduler's oneTBB task_arena.
struct CpuLayerContext {
  float* workspace = nullptr;
  size_t workspace_floats = 0;
  void* kv_cache = nullptr;
  float* output = nullptr;  // output_floats(n_tokens) floats (host), for the layer that has an output
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual const std::string& name() const = 0;
  // The tensors the layer reads, in the order forward_* receives their views. Host bytes stay valid while the layer
  // lives (the scheduler copies them at construction; CPU layers read them in place every step).
  virtual std::span<const WeightTensor> weights() const = 0;
  // Elements per token of the residual stream.
  virtual int64_t width() const = 0;
  // Float32 scratch for a call over n_tokens tokens (the same on both devices).
  virtual size_t workspace_floats(int64_t n_tokens) const = 0;
  // Per-layer KV cache (zero for layers without attention).
  virtual uint64_t kv_cache_bytes() const { return 0; }
  // Floats the layer writes besides the residual stream (a model's logits); only the last layer of a stack may have
  // an output. The scheduler reserves it where the layer runs and hands it back after the step (output()).
  virtual size_t output_floats(int64_t /*n_tokens*/) const { return 0; }

  // x: device [n_tokens, width()], updated in place; weights: weights() re-pointed at device memory.
  virtual void forward_gpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                           const GpuLayerContext& context) const = 0;
  // x: host [n_tokens, width()], updated in place; weights: weights() as they are (host memory).
  virtual void forward_cpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                           const CpuLayerContext& context) const = 0;
};

}  // namespace ferry
