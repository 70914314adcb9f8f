#include "ferry/models/llama/profile.hpp"

#include <algorithm>

#include "ferry/gguf.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/stack_support.hpp"

namespace ferry {

StackProfile llama_stack_profile(const LlamaConfig& config, const LlamaWeights& weights, int64_t n_ctx,
                                 int64_t max_tokens, bool all_logits, int64_t n_seq) {
  // The layers themselves say what they need: a profile cannot drift from what the scheduler will reserve.
  const auto layers = make_llama_layers(config, weights, n_ctx, all_logits, n_seq);
  StackProfile profile;
  profile.model = "llama";
  profile.max_tokens = std::min(max_tokens, n_ctx);
  profile.layers = layer_demands(layer_pointers(layers), profile.max_tokens);
  profile.kv_cache_rows = n_ctx * n_seq;  // LlamaBlockLayer::kv_cache_bytes: K and V of n_seq x n_ctx positions
  return profile;
}

StackProfile llama_stack_profile(const GgufFile& file, int64_t n_ctx, int64_t max_tokens, bool all_logits) {
  const LlamaConfig config = LlamaConfig::from_gguf(file);
  const LlamaWeights weights = LlamaWeights::from_gguf(file, config);
  StackProfile profile = llama_stack_profile(config, weights, n_ctx, max_tokens, all_logits);
  profile.model = file.name();
  return profile;
}

}  // namespace ferry
