#include "ferry/models/llama/profile.hpp"

#include <algorithm>

#include "ferry/gguf.hpp"
#include "ferry/models/llama/runner.hpp"

namespace ferry {

StackProfile llama_stack_profile(const GgufFile& file, int64_t n_ctx, int64_t max_tokens, bool all_logits) {
  const LlamaConfig config = LlamaConfig::from_gguf(file);
  const LlamaWeights weights = LlamaWeights::from_gguf(file, config);
  const auto layers = make_llama_layers(config, weights, n_ctx, all_logits);
  std::vector<const Layer*> pointers;
  for (const auto& l : layers) pointers.push_back(l.get());
  StackProfile profile;
  profile.model = file.name();
  profile.max_tokens = std::min(max_tokens, n_ctx);  // as the runner clamps it
  profile.layers = layer_demands(pointers, profile.max_tokens);
  return profile;
}

}  // namespace ferry
