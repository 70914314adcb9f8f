// Text generation: tokenize the prompt, run it through a backend in one prefill call, then sample one token at a time
// until EOS (or another stop token), the token limit, the end of the context or a cancellation, streaming each token's
// text as it is produced. A conversation continues where the last call left off: the prompt goes in at `pos0`, after
// what the backend's cache already holds.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/text/sampler.hpp"

namespace ferry {

class Tokenizer;

// A causal language model with a KV cache: what generation drives (LlamaRunner; a scripted one in tests).
class CausalLm {
 public:
  virtual ~CausalLm() = default;
  virtual int64_t n_ctx() const noexcept = 0;
  virtual int64_t n_vocab() const noexcept = 0;
  // Runs `tokens` at positions pos0 .. pos0 + size - 1 (the cache must hold positions < pos0 from earlier calls).
  // Writes the logits of every token ([size, n_vocab]) when all_logits, else of the last token only ([n_vocab]).
  // Throws INVALID_ARGUMENT when the context would overflow or a token id is outside the vocabulary.
  virtual void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) = 0;
};

struct GenerateOptions {
  std::string prompt;
  // The prompt already tokenized (a caller that checked its length first); empty: tokenize `prompt` here.
  std::vector<int32_t> prompt_tokens;
  int64_t max_new_tokens = 64;
  bool add_bos = true;
  // The prompt's first position: the backend's cache must hold the positions before it (an earlier turn).
  int64_t pos0 = 0;
  // Tokens that end the answer besides EOS (a chat format's end of turn); like EOS, never emitted or fed back.
  std::vector<int32_t> stop_tokens;
  // Checked before each token is sampled: once true, generation stops (what was generated stays in the cache). May be
  // set from a signal handler or another thread.
  const std::atomic<bool>* cancel = nullptr;
  SamplerConfig sampler;
  // Called when the model's logits hold NaN or no finite value: a sentence on the likely cause (e.g. which weight is
  // not finite) appended to the error. May be empty.
  std::function<std::string()> explain_non_finite;
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prompt_seconds = 0.0;    // the prefill call
  double generate_seconds = 0.0;  // every decode step, sampling included
  bool stopped_at_eos = false;
  bool stopped_at_stop_token = false;  // one of GenerateOptions::stop_tokens (the token is in stop_token)
  bool stopped_at_context = false;     // the context filled up before max_new_tokens or EOS
  bool cancelled = false;              // GenerateOptions::cancel was set
  int32_t stop_token = -1;             // the EOS or stop token that ended generation, -1 otherwise
  std::vector<int32_t> tokens;         // every generated token, in order (the EOS or stop token excluded)
  // The positions the backend's cache now holds (pos0 + prompt + the generated tokens fed back): where a
  // continuation's prompt goes. The last generated token is not fed back and so not counted.
  int64_t n_past = 0;
  double prompt_tokens_per_second() const noexcept { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
  double generate_tokens_per_second() const noexcept {
    return generate_seconds > 0 ? generated_tokens / generate_seconds : 0;
  }
};

// Throws INVALID_ARGUMENT when the prompt after pos0 (plus at least one new token) does not fit the backend's
// context; the message gives both numbers. FORMAT when the model's logits hold NaN or no finite value (broken weights):
// nothing is sampled from them. `on_text` receives each generated token's text.
GenerateStats generate(CausalLm& backend, const Tokenizer& tokenizer, const GenerateOptions& options,
                       const std::function<void(std::string_view)>& on_text);

}  // namespace ferry
