// Perplexity by llama.cpp's method (its `llama-perplexity` without --ppl-stride), so figures compare with published
// ones:
// - the whole text is tokenized once (with BOS in front when the model adds one) and cut into chunks of n_ctx tokens;
//   a trailing partial chunk is dropped;
// - every chunk is evaluated independently, from an empty cache at position 0; when the model adds BOS, the chunk's
//   first token is replaced by BOS for the evaluation (the token itself is never scored);
// - only the second half of each chunk is scored: the logits at positions first .. n_ctx - 2 (first = n_ctx / 2)
//   against the tokens that follow them, so every scored token is predicted from at least n_ctx / 2 tokens;
// - with v = -log p(token) over all scored tokens: PPL = exp(mean v), and the uncertainty exp(mean v) *
//   sqrt((mean v^2 - (mean v)^2) / (count - 1)), the standard error of the mean carried through the exponential.
// The log-probabilities are computed in double from the model's float logits (llama.cpp sums exp in double too).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "ferry/text/generate.hpp"

namespace ferry {

// The smallest chunk: 3 tokens scored per chunk, so even one chunk gives an uncertainty.
inline constexpr int64_t kPerplexityMinContext = 8;

struct PerplexityOptions {
  int64_t n_ctx = 512;     // tokens per chunk; at least kPerplexityMinContext, at most the model's n_ctx()
  int64_t max_chunks = 0;  // 0: every whole chunk of the text
  int64_t batch = 512;     // tokens per forward call (any value gives the same result: a step size, not a method)
  int32_t bos = -1;        // >= 0: the model adds BOS, and each chunk's first token is replaced by this id
  // As GenerateOptions::explain_non_finite: appended to the error when a scored row of logits is not finite.
  std::function<std::string()> explain_non_finite;
};

// After each chunk: its index (0-based), the chunks in all, the running estimate exp(mean v) over every chunk so far.
struct PerplexityProgress {
  int64_t chunk = 0;
  int64_t n_chunks = 0;
  double running_ppl = 0.0;
};

struct PerplexityResult {
  int64_t n_chunks = 0;
  int64_t n_scored = 0;      // tokens scored: n_chunks * (n_ctx - 1 - n_ctx / 2)
  double mean_nll = 0.0;     // mean v
  double ppl = 0.0;          // exp(mean v)
  double uncertainty = 0.0;  // as in the header
  double seconds = 0.0;      // forward passes and scoring
};

// The rows of logits as the model produced them, every evaluated position of every chunk in order: the position in
// the chunk (0 .. n_ctx - 1), the token evaluated there (BOS where it replaced the first token) and n_vocab floats.
using LogitsRowSink = std::function<void(int64_t position, int32_t token, std::span<const float> logits)>;

// The number of whole chunks `n_tokens` tokens give (at most max_chunks when that is positive).
int64_t perplexity_chunk_count(int64_t n_tokens, const PerplexityOptions& options) noexcept;

// Throws INVALID_ARGUMENT when n_ctx is below kPerplexityMinContext or above lm.n_ctx(), when batch < 1, or when the
// text has fewer than 2 * n_ctx tokens (llama.cpp's minimum: two chunks); FORMAT when a scored row of logits is not
// finite. `on_chunk` and `on_row` may be empty.
PerplexityResult perplexity(CausalLm& lm, std::span<const int32_t> tokens, const PerplexityOptions& options,
                            const std::function<void(const PerplexityProgress&)>& on_chunk = {},
                            const LogitsRowSink& on_row = {});

}  // namespace ferry
