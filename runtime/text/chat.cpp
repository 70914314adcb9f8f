#include "ferry/text/chat.hpp"

#include <algorithm>

#include "ferry/error.hpp"
#include "ferry/text/tokenizer.hpp"

namespace ferry {
namespace {

// The id of a token written as `text` (a control token like "<|im_end|>"), or -1 when the vocabulary spells the text
// with several tokens or none.
int32_t single_token(const Tokenizer& tokenizer, const std::string& text) {
  if (text.empty()) return -1;
  const std::vector<int32_t> ids = tokenizer.encode(text, false, true);
  if (ids.size() != 1 || tokenizer.token_to_piece(ids[0], true) != text) return -1;
  return ids[0];
}

std::string trim_whitespace(const std::string& s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

}  // namespace

ModelChatFormat chat_format_for_model(const Tokenizer& tokenizer, bool add_bos,
                                      const std::optional<std::string>& chat_template,
                                      std::optional<ChatFormatId> forced, const std::string& model) {
  const std::optional<ChatFormatId> detected = chat_template ? detect_chat_format(*chat_template) : std::nullopt;
  std::optional<ChatFormatId> id = forced ? forced : detected;
  std::string origin;
  if (forced) {
    origin = "--chat-format " + std::string(chat_format_name(*forced));
  } else if (detected) {
    origin = "tokenizer.chat_template";
  } else {
    const std::string why = chat_template ? "its tokenizer.chat_template is not a format ferry recognises"
                                          : "it has no tokenizer.chat_template";
    if (single_token(tokenizer, "<|im_start|>") < 0)
      fail(ErrorCategory::UNSUPPORTED, model + ": " + why +
                                           " and its vocabulary has no <|im_start|> token (no ChatML): choose the "
                                           "model's chat format with --chat-format (" +
                                           chat_format_names() + ")");
    id = ChatFormatId::CHATML;
    origin = why + "; ChatML, since the vocabulary has <|im_start|>";
  }
  const int32_t bos = tokenizer.bos(), eos = tokenizer.eos();
  const std::string bos_text = bos >= 0 ? tokenizer.token_to_piece(bos, true) : "";
  const std::string eos_text = eos >= 0 ? tokenizer.token_to_piece(eos, true) : "";
  const std::string default_system =
      *id == ChatFormatId::CHATML && chat_template ? chatml_default_system(*chat_template) : "";
  ModelChatFormat m{ChatFormat(*id, bos_text, eos_text, default_system), {}, add_bos, origin};
  for (const std::string& text : m.format.end_of_turn_texts()) {
    const int32_t token = single_token(tokenizer, text);
    if (token < 0)
      fail(ErrorCategory::UNSUPPORTED,
           model + ": the " + std::string(m.format.name()) + " chat format ends a turn with " +
               (text.empty() ? std::string("the EOS token, which the vocabulary lacks")
                             : quote_name(text) + ", which is not a token of the vocabulary") +
               " (--chat-format chooses another format; formats: " + chat_format_names() + ")");
    m.end_of_turn.push_back(token);
  }
  if (eos >= 0 && std::find(m.end_of_turn.begin(), m.end_of_turn.end(), eos) == m.end_of_turn.end())
    m.end_of_turn.push_back(eos);
  return m;
}

ChatSession::ChatSession(CausalLm& backend, const Tokenizer& tokenizer, ModelChatFormat format, std::string system)
    : m_backend(backend), m_tokenizer(tokenizer), m_format(std::move(format)) {
  if (!system.empty()) m_messages.push_back({"system", std::move(system)});
}

std::vector<int32_t> chat_tokens(const ModelChatFormat& format, const Tokenizer& tokenizer,
                                 std::span<const ChatMessage> messages, bool add_generation_prompt) {
  const std::string text = format.format.render(messages, add_generation_prompt);
  const int32_t bos = tokenizer.bos();
  const bool bos_written = bos >= 0 && text.starts_with(tokenizer.token_to_piece(bos, true));
  return tokenizer.encode(text, format.add_bos && !bos_written, true);
}

std::vector<int32_t> ChatSession::conversation_tokens(bool add_generation_prompt) const {
  return chat_tokens(m_format, m_tokenizer, m_messages, add_generation_prompt);
}

ChatTurn ChatSession::reply(std::string user, const ChatReplyOptions& options,
                            const std::function<void(std::string_view)>& on_text) {
  ChatTurn turn;
  m_messages.push_back({"user", std::move(user)});
  const std::vector<int32_t> tokens = conversation_tokens(true);
  turn.needed = static_cast<int64_t>(tokens.size());
  if (turn.needed >= m_backend.n_ctx()) {
    m_messages.pop_back();
    turn.context_full = true;
    return turn;
  }
  // Reuse the longest prefix the cache holds; at least one token is evaluated, for the logits of the first answer.
  const size_t limit = std::min(m_cached.size(), tokens.size() - 1);
  size_t common = 0;
  while (common < limit && m_cached[common] == tokens[common]) ++common;
  turn.position = static_cast<int64_t>(common);

  GenerateOptions g;
  g.prompt_tokens.assign(tokens.begin() + static_cast<std::ptrdiff_t>(common), tokens.end());
  g.pos0 = turn.position;
  g.max_new_tokens = options.max_new_tokens;
  g.stop_tokens = m_format.end_of_turn;
  g.cancel = options.cancel;
  g.sampler = options.sampler;
  g.explain_non_finite = options.explain_non_finite;
  std::string answer;
  // The cache holds the new prompt from here on, even if generation throws part-way.
  m_cached = tokens;
  try {
    turn.stats = generate(m_backend, m_tokenizer, g, [&](std::string_view piece) {
      answer += piece;
      if (on_text) on_text(piece);
    });
  } catch (...) {
    m_cached.resize(common);  // what the cache holds for certain
    m_messages.pop_back();
    throw;
  }
  // The generated tokens that were fed back are in the cache too (the last one never is).
  const auto fed = static_cast<size_t>(turn.stats.n_past) - m_cached.size();
  m_cached.insert(m_cached.end(), turn.stats.tokens.begin(),
                  turn.stats.tokens.begin() + static_cast<std::ptrdiff_t>(fed));
  turn.answer = trim_whitespace(answer);
  m_messages.push_back({"assistant", turn.answer});
  return turn;
}

}  // namespace ferry
