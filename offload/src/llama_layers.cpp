#include "ferry/offload/llama_layers.hpp"

#include <string>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/llama_cpu.hpp"

namespace ferry {
namespace {

QuantMatrixView vector_view(const float* data, int64_t n) { return QuantMatrixView{GgmlType::F32, data, n, 1}; }

void check_call(const std::string& name, size_t n_views, size_t expected_views, size_t workspace, size_t needed) {
  if (n_views != expected_views || workspace < needed)
    fail(ErrorCategory::INTERNAL, "layer '" + name + "': given " + std::to_string(n_views) + " weights and " +
                                      std::to_string(workspace) + " workspace floats, needs " +
                                      std::to_string(expected_views) + " and " + std::to_string(needed));
}

}  // namespace

LlamaBlockLayer::LlamaBlockLayer(const LlamaConfig& config, const LlamaLayerWeights& w, int64_t index, int64_t n_ctx,
                                 const LlamaStep* step)
    : m_config(config), m_name("blk." + std::to_string(index)), m_n_ctx(n_ctx), m_step(step) {
  const std::string p = m_name + ".";
  m_tensors = {
      {p + "attn_norm.weight", vector_view(w.attn_norm, config.n_embd)},
      {p + "attn_q.weight", w.wq},
      {p + "attn_k.weight", w.wk},
      {p + "attn_v.weight", w.wv},
      {p + "attn_output.weight", w.wo},
      {p + "ffn_norm.weight", vector_view(w.ffn_norm, config.n_embd)},
      {p + "ffn_gate.weight", w.w_gate},
      {p + "ffn_up.weight", w.w_up},
      {p + "ffn_down.weight", w.w_down},
  };
}

LlamaLayerWeights LlamaBlockLayer::rebind(std::span<const QuantMatrixView> v) const {
  return LlamaLayerWeights{static_cast<const float*>(v[ATTN_NORM].data), v[WQ],     v[WK],   v[WV],    v[WO],
                           static_cast<const float*>(v[FFN_NORM].data),  v[W_GATE], v[W_UP], v[W_DOWN]};
}

size_t LlamaBlockLayer::workspace_floats(int64_t n_tokens) const {
  return LlamaBlockBuffers::workspace_floats(m_config, n_tokens) +
         llama_block_gpu_extra_floats(m_config, n_tokens, m_n_ctx);
}

uint64_t LlamaBlockLayer::kv_cache_bytes() const {
  return 2 * static_cast<uint64_t>(m_n_ctx) * static_cast<uint64_t>(m_config.n_embd_kv()) * sizeof(uint16_t);
}

void LlamaBlockLayer::forward_cpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                                  const CpuLayerContext& context) const {
  check_call(m_name, weights.size(), COUNT, context.workspace_floats,
             LlamaBlockBuffers::workspace_floats(m_config, n_tokens));
  auto* kv = static_cast<uint16_t*>(context.kv_cache);
  const LlamaKvView view{kv, kv + m_n_ctx * m_config.n_embd_kv(), m_n_ctx};
  llama_block_forward_cpu(m_config, rebind(weights), view,
                          LlamaBlockBuffers::carve(m_config, n_tokens, context.workspace), x, n_tokens, m_step->pos0);
}

LlamaHeadLayer::LlamaHeadLayer(const LlamaConfig& config, const LlamaWeights& w, const LlamaStep* step,
                               bool all_logits_capacity)
    : m_config(config), m_step(step), m_all_logits_capacity(all_logits_capacity) {
  m_tensors = {{"output_norm.weight", vector_view(w.output_norm, config.n_embd)},
               {w.tied_output ? "token_embd.weight (tied output)" : "output.weight", w.output}};
}

int64_t LlamaHeadLayer::first_logit_row(int64_t n_tokens) const {
  if (m_step->all_logits && !m_all_logits_capacity)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "layer '" + m_name + "': logits for every token were asked for, but the output holds one row per step");
  // Only the last token's logits are needed to sample; prefill skips the others unless asked.
  return m_step->all_logits ? 0 : n_tokens - 1;
}

size_t LlamaHeadLayer::workspace_floats(int64_t n_tokens) const {
  return static_cast<size_t>(n_tokens * m_config.n_embd);
}

void LlamaHeadLayer::forward_cpu(std::span<const QuantMatrixView> weights, float* x, int64_t n_tokens,
                                 const CpuLayerContext& context) const {
  check_call(m_name, weights.size(), COUNT, context.workspace_floats, workspace_floats(n_tokens));
  const int64_t first = first_logit_row(n_tokens);
  const int64_t rows = n_tokens - first;
  cpu::rms_norm(x + first * m_config.n_embd, static_cast<const float*>(weights[OUTPUT_NORM].data), context.workspace,
                rows, m_config.n_embd, m_config.rms_eps);
  cpu::matmul(weights[OUTPUT], context.workspace, rows, context.output);
}

}  // namespace ferry

#ifndef FERRY_HAVE_CUDA
// Without the CUDA backend the scheduler never places a layer on the GPU; these keep the vtable complete.
namespace ferry {
size_t llama_block_gpu_extra_floats(const LlamaConfig&, int64_t, int64_t) { return 0; }
void LlamaBlockLayer::forward_gpu(std::span<const QuantMatrixView>, float*, int64_t, const GpuLayerContext&) const {
  fail(ErrorCategory::UNSUPPORTED, "layer '" + m_name + "': this build of ferry has no CUDA backend");
}
void LlamaHeadLayer::forward_gpu(std::span<const QuantMatrixView>, float*, int64_t, const GpuLayerContext&) const {
  fail(ErrorCategory::UNSUPPORTED, "layer '" + m_name + "': this build of ferry has no CUDA backend");
}
}  // namespace ferry
#endif
