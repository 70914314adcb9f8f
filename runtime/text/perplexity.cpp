#include "ferry/text/perplexity.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "ferry/error.hpp"

namespace ferry {
namespace {

// -log p(token) under softmax(logits), in double; NaN or infinite when the row is not finite.
double negative_log_likelihood(std::span<const float> logits, int32_t token) {
  float max = logits[0];
  for (float v : logits) max = std::max(max, v);
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  return static_cast<double>(max) + std::log(sum) - logits[static_cast<size_t>(token)];
}

void check_options(const CausalLm& lm, std::span<const int32_t> tokens, const PerplexityOptions& o) {
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  if (o.n_ctx < kPerplexityMinContext)
    fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: a chunk of " + std::to_string(o.n_ctx) +
                                              " tokens is too small (at least " +
                                              std::to_string(kPerplexityMinContext) + ")");
  if (o.n_ctx > lm.n_ctx())
    fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: a chunk of " + std::to_string(o.n_ctx) +
                                              " tokens does not fit the model's context of " +
                                              std::to_string(lm.n_ctx()));
  if (o.batch < 1) fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: the batch must be at least one token");
  if (o.max_chunks < 0) fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: a negative number of chunks");
  if (n_tokens < 2 * o.n_ctx)
    fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: the text is " + std::to_string(n_tokens) +
                                              " tokens long; chunks of " + std::to_string(o.n_ctx) + " need at least " +
                                              std::to_string(2 * o.n_ctx) + " (two chunks)");
  // A target token is read from a row of logits before the forward pass that would reject it as an input.
  for (int64_t i = 0; i < n_tokens; ++i)
    if (tokens[static_cast<size_t>(i)] < 0 || tokens[static_cast<size_t>(i)] >= lm.n_vocab())
      fail(ErrorCategory::INVALID_ARGUMENT, "perplexity: token " + std::to_string(i) + " has the id " +
                                                std::to_string(tokens[static_cast<size_t>(i)]) +
                                                ", outside the vocabulary of " + std::to_string(lm.n_vocab()));
}

[[noreturn]] void non_finite(int64_t chunk, int64_t position, double v, const PerplexityOptions& o) {
  std::string message = "the model's logits in chunk " + std::to_string(chunk + 1) + " at position " +
                        std::to_string(position) + " give a log-probability of " + std::to_string(-v) +
                        ": its weights or the forward pass produced non-finite values";
  if (o.explain_non_finite)
    if (const std::string why = o.explain_non_finite(); !why.empty()) message += " (" + why + ")";
  fail(ErrorCategory::FORMAT, message);
}

}  // namespace

int64_t perplexity_chunk_count(int64_t n_tokens, const PerplexityOptions& options) noexcept {
  if (options.n_ctx < 1) return 0;
  const int64_t whole = n_tokens / options.n_ctx;
  return options.max_chunks > 0 ? std::min(whole, options.max_chunks) : whole;
}

PerplexityResult perplexity(CausalLm& lm, std::span<const int32_t> tokens, const PerplexityOptions& options,
                            const std::function<void(const PerplexityProgress&)>& on_chunk,
                            const LogitsRowSink& on_row) {
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  check_options(lm, tokens, options);
  const auto start_time = std::chrono::steady_clock::now();
  const int64_t n_ctx = options.n_ctx, n_vocab = lm.n_vocab();
  const int64_t first = n_ctx / 2;  // the first position whose logits are scored
  const int64_t batch = std::min(options.batch, n_ctx);
  PerplexityResult result;
  result.n_chunks = perplexity_chunk_count(n_tokens, options);

  std::vector<int32_t> input(static_cast<size_t>(n_ctx));
  std::vector<float> logits(static_cast<size_t>(batch * n_vocab));
  double sum = 0.0, sum_sq = 0.0;  // of v = -log p over the scored tokens
  int64_t count = 0;
  for (int64_t chunk = 0; chunk < result.n_chunks; ++chunk) {
    const std::span<const int32_t> text =
        tokens.subspan(static_cast<size_t>(chunk * n_ctx), static_cast<size_t>(n_ctx));
    std::copy(text.begin(), text.end(), input.begin());
    if (options.bos >= 0) input[0] = options.bos;
    for (int64_t start = 0; start < n_ctx; start += batch) {
      const int64_t T = std::min(batch, n_ctx - start);
      // Rows before `first` are needed only by on_row; without it one row (the last) is all the call must return.
      const bool rows = on_row || start + T > first;
      const std::span<const int32_t> piece(input.data() + start, static_cast<size_t>(T));
      lm.forward(piece, start, std::span<float>(logits.data(), static_cast<size_t>((rows ? T : 1) * n_vocab)), rows);
      if (!rows) continue;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t pos = start + t;
        const std::span<const float> row(logits.data() + t * n_vocab, static_cast<size_t>(n_vocab));
        if (on_row) on_row(pos, input[static_cast<size_t>(pos)], row);
        if (pos < first || pos + 1 >= n_ctx) continue;  // the last position predicts a token of the next chunk
        const double v = negative_log_likelihood(row, text[static_cast<size_t>(pos + 1)]);
        if (!std::isfinite(v)) non_finite(chunk, pos, v, options);
        sum += v;
        sum_sq += v * v;
        ++count;
      }
    }
    if (on_chunk) on_chunk(PerplexityProgress{chunk, result.n_chunks, std::exp(sum / static_cast<double>(count))});
  }
  result.n_scored = count;
  result.mean_nll = sum / static_cast<double>(count);
  result.ppl = std::exp(result.mean_nll);
  const double variance = sum_sq / static_cast<double>(count) - result.mean_nll * result.mean_nll;
  result.uncertainty =
      variance > 0.0 && count > 1 ? result.ppl * std::sqrt(variance / static_cast<double>(count - 1)) : 0.0;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  return result;
}

}  // namespace ferry
