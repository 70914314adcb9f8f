// Views of the operands every backend's ops take. Plain structs with raw pointers: the same view describes a weight
// in host memory (CPU ops), in the device arena (CUDA ops) or in a staging slot, so the scheduler can run one layer on
// either backend with the same description.
#pragma once

#include <cstdint>

#include "ferry/ggml_type.hpp"

namespace ferry {

// A weight matrix in GGML layout: n_rows rows (outputs, ne[1]) of n_cols elements (the reduction dimension, ne[0]),
// each row row_bytes(type, n_cols) bytes, rows consecutive. PyTorch's Linear weight [out, in] is n_rows = out.
struct QuantMatrixView {
  GgmlType type;
  const void* data;
  int64_t n_cols;  // K: elements per row, a multiple of the type's block size
  int64_t n_rows;  // N: output features
};

enum class RopeMode {
  ADJACENT,    // rotates pairs (x[2i], x[2i+1]): llama as converted to GGUF, Flux
  HALF_SPLIT,  // rotates pairs (x[i], x[i + d/2]): NeoX, qwen2
};

// Geometry of one attention call. Queries [n_q, n_head, head_dim], keys and values [n_kv, n_kv_head, head_dim]
// (the KV cache of one layer, position-major), output [n_q, n_head, head_dim]. Query head h reads KV head
// h / (n_head / n_kv_head) (grouped-query attention). With `causal`, query i sits at position q_pos0 + i and sees keys
// 0 .. q_pos0 + i; otherwise every query sees all n_kv keys.
struct AttentionShape {
  int64_t n_q;
  int64_t n_kv;
  int64_t n_head;
  int64_t n_kv_head;
  int64_t head_dim;
  int64_t q_pos0;
  bool causal;
  float scale;  // usually 1 / sqrt(head_dim)
};

}  // namespace ferry
