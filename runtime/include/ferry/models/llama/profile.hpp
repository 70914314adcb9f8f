// The llama stack as a planner sees it, from a file's header: what every block and the head demand at a step size
// and context, with no weight read and no GPU touched (GgufFile::open_header is enough).
#pragma once

#include <cstdint>

#include "ferry/policies/stack_profile.hpp"

namespace ferry {

class GgufFile;

// Throws what LlamaConfig/LlamaWeights::from_gguf throw for a file that is not a runnable llama model.
StackProfile llama_stack_profile(const GgufFile& file, int64_t n_ctx, int64_t max_tokens, bool all_logits = false);

}  // namespace ferry
