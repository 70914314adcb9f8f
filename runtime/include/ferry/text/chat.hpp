// A conversation with a model: its chat format bound to the model's vocabulary, and a session that answers one user
// message after another while keeping the backend's KV cache between turns.
//
// Each turn renders the whole conversation (chat_format.hpp) with the generation prompt, tokenizes it, and evaluates
// only the tokens after the longest prefix the cache already holds; the answer is generated from there. So the tokens
// in the cache are always exactly those of the whole conversation rendered at once, whatever the format does between
// turns: the tokens that close an answer (" </s>" in llama2, which the model's own tokens need not spell the same way)
// and a system message that moves (mistral-v3) cost a re-evaluation from where they differ, never a wrong cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/text/chat_format.hpp"
#include "ferry/text/generate.hpp"

namespace ferry {

class Tokenizer;

// A chat format with what it needs of the vocabulary.
struct ModelChatFormat {
  ChatFormat format;
  std::vector<int32_t> end_of_turn;  // ids that end an answer: the format's end-of-turn tokens and EOS
  bool add_bos = false;              // put BOS in front of a rendering that does not start with it
  std::string origin;                // how the format was chosen, for the user
};

// The format for a model: `forced` when given (--chat-format), else the one `chat_template` implements (the file's
// tokenizer.chat_template; nullopt when absent), else ChatML when the vocabulary has <|im_start|> (the common case of
// fine-tunes without a template). `add_bos`: the model's BOS decision (Tokenizer::add_bos_default()). Throws
// UNSUPPORTED, naming `model` and suggesting --chat-format, when no format can be chosen or the format's end-of-turn
// token is not a single token of the vocabulary.
ModelChatFormat chat_format_for_model(const Tokenizer& tokenizer, bool add_bos,
                                      const std::optional<std::string>& chat_template,
                                      std::optional<ChatFormatId> forced, const std::string& model);

// `messages` rendered in `format` and tokenized as the model reads them: special tokens parsed, and BOS in front when
// the model wants one and the format does not write it (llama.cpp's rule: never a second BOS).
std::vector<int32_t> chat_tokens(const ModelChatFormat& format, const Tokenizer& tokenizer,
                                 std::span<const ChatMessage> messages, bool add_generation_prompt);

struct ChatReplyOptions {
  int64_t max_new_tokens = 256;
  SamplerConfig sampler;
  const std::atomic<bool>* cancel = nullptr;  // stops the answer (see GenerateOptions::cancel)
  std::function<std::string()> explain_non_finite;
};

struct ChatTurn {
  // The conversation with the new message does not fit the context (with room for one token of answer): nothing
  // was evaluated and the message was not added. `needed` is the conversation's length in tokens.
  bool context_full = false;
  int64_t needed = 0;
  int64_t position = 0;  // the turn's first evaluated position: the cache's tokens before it were reused
  GenerateStats stats;   // stats.prompt_tokens: tokens evaluated before the answer
  std::string answer;    // as it joined the conversation (whitespace at both ends trimmed)
};

class ChatSession {
 public:
  // `system`: the system message ("" for none: the format's default one, if any, applies). The backend's cache is
  // taken as empty; the session must be its only user.
  ChatSession(CausalLm& backend, const Tokenizer& tokenizer, ModelChatFormat format, std::string system = {});

  // Adds `user` to the conversation and answers it, streaming the answer's text to on_text. The answer joins the
  // conversation whatever ended it (end of turn, the token limit, cancellation, the end of the context).
  ChatTurn reply(std::string user, const ChatReplyOptions& options,
                 const std::function<void(std::string_view)>& on_text);

  const std::vector<ChatMessage>& messages() const noexcept { return m_messages; }
  const ModelChatFormat& format() const noexcept { return m_format; }
  // The whole conversation rendered and tokenized as the model reads it.
  std::vector<int32_t> conversation_tokens(bool add_generation_prompt) const;
  // The tokens whose keys and values the backend's cache holds, position by position.
  const std::vector<int32_t>& cached() const noexcept { return m_cached; }

 private:
  CausalLm& m_backend;
  const Tokenizer& m_tokenizer;
  ModelChatFormat m_format;
  std::vector<ChatMessage> m_messages;
  std::vector<int32_t> m_cached;
};

}  // namespace ferry
