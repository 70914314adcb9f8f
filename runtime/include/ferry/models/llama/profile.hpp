// The llama stack as a planner sees it, from a file's header: what every block and the head demand at a step size
// and context, with no weight read and no GPU touched (GgufFile::open_header is enough).
#pragma once

#include <cstdint>

#include "ferry/models/llama/model.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

class GgufFile;

// Throws what LlamaConfig/LlamaWeights::from_gguf throw for a file that is not a runnable llama model.
StackProfile llama_stack_profile(const GgufFile& file, int64_t n_ctx, int64_t max_tokens, bool all_logits = false);
// The same for a model already read (the runner plans with this). max_tokens is clamped to n_ctx, as the runner does.
// n_seq: KV caches (one per sequence a multi-sequence step may run).
StackProfile llama_stack_profile(const LlamaConfig& config, const LlamaWeights& weights, int64_t n_ctx,
                                 int64_t max_tokens, bool all_logits, int64_t n_seq = 1);

}  // namespace ferry
