#include "ferry/text/generate.hpp"

#include <algorithm>
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
  if (options.pos0 < 0)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "generate: the prompt's position " + std::to_string(options.pos0) + " is negative");
  const auto n_prompt = static_cast<int64_t>(tokens.size());
  if (options.pos0 + n_prompt >= backend.n_ctx())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "the prompt is " + std::to_string(n_prompt) + " tokens long" +
             (options.pos0 > 0 ? " after " + std::to_string(options.pos0) + " tokens already in the context" : "") +
             "; the context holds " + std::to_string(backend.n_ctx()) + " (use a shorter prompt or a larger --ctx)");
  GenerateStats stats;
  stats.prompt_tokens = n_prompt;
  Sampler sampler(options.sampler);
  std::vector<float> logits(static_cast<size_t>(backend.n_vocab()));
  auto is_stop = [&options](int32_t id) {
    return std::find(options.stop_tokens.begin(), options.stop_tokens.end(), id) != options.stop_tokens.end();
  };

  auto start = Clock::now();
  backend.forward(tokens, options.pos0, logits, false);
  stats.prompt_seconds = std::chrono::duration<double>(Clock::now() - start).count();

  start = Clock::now();
  int64_t pos = options.pos0 + n_prompt;
  bool first_piece = true;
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    if (options.cancel && options.cancel->load()) {
      stats.cancelled = true;
      break;
    }
    check_logits(logits, pos - 1, options);
    const int32_t next = sampler.sample(logits);
    if (next == tokenizer.eos() || is_stop(next)) {
      (next == tokenizer.eos() ? stats.stopped_at_eos : stats.stopped_at_stop_token) = true;
      stats.stop_token = next;
      break;
    }
    stats.tokens.push_back(next);
    std::string piece = tokenizer.token_to_piece(next);
    ++stats.generated_tokens;
    if (first_piece && options.prompt.empty() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    first_piece = false;
    if (on_text) on_text(piece);
    if (i + 1 == options.max_new_tokens) break;  // no need for more logits
    if (pos >= backend.n_ctx()) {                // every position is taken: no room for the token just sampled
      stats.stopped_at_context = true;
      break;
    }
    const int32_t one[1] = {next};
    backend.forward(one, pos, logits, false);
    ++pos;
  }
  stats.n_past = pos;
  stats.generate_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return stats;
}

}  // namespace ferry
