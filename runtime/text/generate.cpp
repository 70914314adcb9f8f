#include "ferry/text/generate.hpp"

#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/tokenizer.hpp"

namespace ferry {
namespace {

// Logits a sampler must not see: any NaN (a broken forward pass), or nothing finite to choose from.
void check_logits(std::span<const float> logits, int64_t position, const GenerateOptions& options) {
  bool any_finite = false;
  for (float v : logits) {
    if (std::isnan(v)) {
      any_finite = false;
      break;
    }
    any_finite = any_finite || std::isfinite(v);
  }
  if (any_finite) return;
  std::string message = "the model's logits at position " + std::to_string(position) +
                        " are NaN or not finite: its weights or the forward pass produced non-finite values";
  if (options.explain_non_finite)
    if (const std::string why = options.explain_non_finite(); !why.empty()) message += " (" + why + ")";
  fail(ErrorCategory::FORMAT, message);
}

}  // namespace

GenerateStats generate(CausalLm& backend, const Tokenizer& tokenizer, const GenerateOptions& options,
                       const std::function<void(std::string_view)>& on_text) {
  using Clock = std::chrono::steady_clock;
  std::vector<int32_t> tokens =
      options.prompt_tokens.empty() ? tokenizer.encode(options.prompt, options.add_bos) : options.prompt_tokens;
  if (tokens.empty()) fail(ErrorCategory::INVALID_ARGUMENT, "the prompt is empty and the vocabulary has no BOS token");
  const auto n_prompt = static_cast<int64_t>(tokens.size());
  if (n_prompt >= backend.n_ctx())
    fail(ErrorCategory::INVALID_ARGUMENT, "the prompt is " + std::to_string(n_prompt) +
                                              " tokens long; the context holds " + std::to_string(backend.n_ctx()) +
                                              " (use a shorter prompt or a larger --ctx)");
  GenerateStats stats;
  stats.prompt_tokens = n_prompt;
  Sampler sampler(options.sampler);
  std::vector<float> logits(static_cast<size_t>(backend.n_vocab()));

  auto start = Clock::now();
  backend.forward(tokens, 0, logits, false);
  stats.prompt_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  start = Clock::now();
  int64_t pos = n_prompt;
  bool first_piece = true;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    check_logits(logits, pos - 1, options);
    const int32_t next = sampler.sample(logits);
    if (next == tokenizer.eos()) {
      stats.stopped_at_eos = true;
      break;
    }
    std::string piece = tokenizer.token_to_piece(next);
    ++stats.generated_tokens;
    if (first_piece && options.prompt.empty() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    first_piece = false;
    if (on_text) on_text(piece);
    if (i + 1 == options.max_new_tokens) break;  // no need for more logits
    if (pos + 1 >= backend.n_ctx()) {            // no room for the token just sampled
      stats.stopped_at_context = true;
      break;
    }
    const int32_t one[1] = {next};
    backend.forward(one, pos, logits, false);
    ++pos;
  }
  stats.generate_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace ferry
