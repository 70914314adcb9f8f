#include "ferry/text/chat_format.hpp"

#include <array>

#include "ferry/error.hpp"

namespace ferry {
namespace {

struct FormatName {
  ChatFormatId id;
  std::string_view name;
};

constexpr std::array kFormats = {
    FormatName{ChatFormatId::CHATML, "chatml"},
    FormatName{ChatFormatId::LLAMA2, "llama2"},
    FormatName{ChatFormatId::LLAMA3, "llama3"},
    FormatName{ChatFormatId::MISTRAL_V1, "mistral"},
    FormatName{ChatFormatId::MISTRAL_V3, "mistral-v3"},
    FormatName{ChatFormatId::MISTRAL_V3_TEKKEN, "mistral-v3-tekken"},
    FormatName{ChatFormatId::MISTRAL_V7, "mistral-v7"},
    FormatName{ChatFormatId::MISTRAL_V7_TEKKEN, "mistral-v7-tekken"},
    FormatName{ChatFormatId::GEMMA, "gemma"},
    FormatName{ChatFormatId::PHI3, "phi3"},
    FormatName{ChatFormatId::DEEPSEEK, "deepseek"},
};

constexpr std::array kIds = [] {
  std::array<ChatFormatId, kFormats.size()> ids{};
  for (size_t i = 0; i < kFormats.size(); ++i) ids[i] = kFormats[i].id;
  return ids;
}();

// Jinja's `trim` and Python's str.strip(), for ASCII whitespace (the templates' answers and questions rarely start or
// end with other spaces; where they do, ferry keeps them).
std::string trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return std::string(s.substr(first, s.find_last_not_of(kSpace) - first + 1));
}

// The conversation split as most templates split it: an optional leading system message, then the turns.
struct Conversation {
  const ChatMessage* system = nullptr;
  std::span<const ChatMessage> turns;
};

Conversation split(std::span<const ChatMessage> messages) {
  Conversation c;
  c.turns = messages;
  if (!messages.empty() && messages[0].role == "system") {
    c.system = &messages[0];
    c.turns = messages.subspan(1);
  }
  for (size_t i = 0; i < c.turns.size(); ++i) {
    const std::string& role = c.turns[i].role;
    if (role == "system")
      fail(ErrorCategory::INVALID_ARGUMENT,
           "chat: a system message must come first (message " + std::to_string(i + (c.system ? 1 : 0)) + " is one)");
    if (role != "user" && role != "assistant")
      fail(ErrorCategory::INVALID_ARGUMENT,
           "chat: message role " + quote_name(role) + " is not one of 'system', 'user', 'assistant'");
  }
  return c;
}

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

// The Mistral formats differ in spaces and in where the system message goes.
struct MistralStyle {
  std::string_view open, close;  // around a user message
  std::string_view answer_lead;  // before an answer
  bool trim_answer;
  enum { FIRST_USER, LAST_USER, OWN_BLOCK } system_at;
  std::string_view system_open, system_close;  // OWN_BLOCK
};

MistralStyle mistral_style(ChatFormatId id) {
  switch (id) {
    case ChatFormatId::MISTRAL_V1:
      return {" [INST] ", " [/INST]", " ", false, MistralStyle::FIRST_USER, {}, {}};
    case ChatFormatId::MISTRAL_V3:
      return {"[INST] ", "[/INST]", " ", true, MistralStyle::LAST_USER, {}, {}};
    case ChatFormatId::MISTRAL_V3_TEKKEN:
      return {"[INST]", "[/INST]", "", false, MistralStyle::LAST_USER, {}, {}};
    case ChatFormatId::MISTRAL_V7:
      return {"[INST] ", "[/INST]", " ", false, MistralStyle::OWN_BLOCK, "[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT]"};
    default:
      return {"[INST]", "[/INST]", "", false, MistralStyle::OWN_BLOCK, "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"};
  }
}

// Mistral's official templates. v3 puts the system message on the last message when it is a user message (`loop.last`
// in the template), so it moves every turn and a conversation ending with an answer has none.
std::string render_mistral(ChatFormatId id, const Conversation& c, const std::string& bos, const std::string& eos) {
  const MistralStyle s = mistral_style(id);
  std::string out = bos;
  if (c.system && s.system_at == MistralStyle::OWN_BLOCK)
    out += std::string(s.system_open) + c.system->content + std::string(s.system_close);
  for (size_t i = 0; i < c.turns.size(); ++i) {
    const ChatMessage& m = c.turns[i];
    if (m.role == "user") {
      const bool with_system = c.system && ((s.system_at == MistralStyle::FIRST_USER && i == 0) ||
                                            (s.system_at == MistralStyle::LAST_USER && i + 1 == c.turns.size()));
      out += s.open;
      if (with_system) out += c.system->content + "\n\n";
      out += m.content + std::string(s.close);
    } else {
      out += std::string(s.answer_lead) + (s.trim_answer ? trim(m.content) : m.content) + eos;
    }
  }
  return out;
}

}  // namespace

std::span<const ChatFormatId> all_chat_formats() noexcept { return kIds; }

std::string_view chat_format_name(ChatFormatId id) noexcept {
  for (const FormatName& f : kFormats)
    if (f.id == id) return f.name;
  return "unknown";
}

std::string chat_format_names() {
  std::string names;
  for (const FormatName& f : kFormats) names += (names.empty() ? "" : ", ") + std::string(f.name);
  return names;
}

std::optional<ChatFormatId> parse_chat_format(std::string_view name) noexcept {
  for (const FormatName& f : kFormats)
    if (f.name == name) return f.id;
  return std::nullopt;
}

std::optional<ChatFormatId> detect_chat_format(std::string_view t) {
  if (const auto named = parse_chat_format(t)) return named;
  if (contains(t, "<|im_start|>")) {
    // Phi-4 and SmolVLM use ChatML's markers in other layouts.
    if (contains(t, "<|im_sep|>") || contains(t, "<end_of_utterance>")) return std::nullopt;
    return ChatFormatId::CHATML;
  }
  if (contains(t, "[INST]")) {
    if (contains(t, "[SYSTEM_PROMPT]"))
      return contains(t, "[SYSTEM_PROMPT] ") ? ChatFormatId::MISTRAL_V7 : ChatFormatId::MISTRAL_V7_TEKKEN;
    if (contains(t, "<<SYS>>")) return ChatFormatId::LLAMA2;
    // v3's templates are the ones with tool calls; v1 and the older Mistral 7B templates have none.
    if (contains(t, "[AVAILABLE_TOOLS]"))
      return contains(t, "[INST] ") ? ChatFormatId::MISTRAL_V3 : ChatFormatId::MISTRAL_V3_TEKKEN;
    return ChatFormatId::MISTRAL_V1;
  }
  if (contains(t, "<|start_header_id|>") && contains(t, "<|end_header_id|>")) return ChatFormatId::LLAMA3;
  if (contains(t, "<|assistant|>") && contains(t, "<|end|>")) return ChatFormatId::PHI3;
  if (contains(t, "<start_of_turn>")) return ChatFormatId::GEMMA;
  if (contains(t, "'Assistant: ' + message['content'] + eos_token") ||
      contains(t, "\"Assistant: \" + message['content'] + eos_token"))
    return ChatFormatId::DEEPSEEK;
  return std::nullopt;
}

std::string chatml_default_system(std::string_view t) {
  constexpr std::string_view kOpen = "<|im_start|>system";
  for (size_t at = t.find(kOpen); at != std::string_view::npos; at = t.find(kOpen, at + 1)) {
    // Only inside a string literal that goes on to the end of the message: `'<|im_start|>system\nTEXT<|im_end|>...'`.
    if (at == 0 || (t[at - 1] != '\'' && t[at - 1] != '"')) continue;
    const char quote = t[at - 1];
    std::string literal;
    size_t i = at + kOpen.size();
    bool closed = false;
    for (; i < t.size(); ++i) {
      if (t[i] == quote) {
        closed = true;
        break;
      }
      if (t[i] == '\\' && i + 1 < t.size()) {
        const char e = t[++i];
        literal += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        continue;
      }
      literal += t[i];
    }
    const size_t end = literal.find("<|im_end|>");
    if (!closed || end == std::string::npos || literal.empty() || literal[0] != '\n') continue;
    return literal.substr(1, end - 1);
  }
  return {};
}

ChatFormat::ChatFormat(ChatFormatId id, std::string bos_text, std::string eos_text, std::string default_system)
    : m_id(id), m_bos(std::move(bos_text)), m_eos(std::move(eos_text)), m_default_system(std::move(default_system)) {}

std::string ChatFormat::render(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  const Conversation c = split(messages);
  std::string out;
  switch (m_id) {
    case ChatFormatId::CHATML: {
      // SmolLM2 and Qwen2.5's templates write their default system message when the conversation has none.
      if (!c.system && !m_default_system.empty()) out += "<|im_start|>system\n" + m_default_system + "<|im_end|>\n";
      for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    }
    case ChatFormatId::LLAMA2: {
      // meta-llama/Llama-2-*-chat-hf: the system message opens the first user message; each user message starts a
      // new sequence with BOS; `content.strip()` everywhere. The template has no generation prompt.
      for (size_t i = 0; i < c.turns.size(); ++i) {
        const ChatMessage& m = c.turns[i];
        std::string content = m.content;
        if (i == 0 && c.system) content = "<<SYS>>\n" + c.system->content + "\n<</SYS>>\n\n" + content;
        if (m.role == "user") {
          out += m_bos + "[INST] " + trim(content) + " [/INST]";
        } else {
          out += ' ';  // (appended piece by piece: GCC 12 warns falsely on `" " + string`, -Wrestrict)
          out += trim(content);
          out += ' ';
          out += m_eos;
        }
      }
      return out;
    }
    case ChatFormatId::LLAMA3: {
      // Meta-Llama-3-*-Instruct: BOS once, every message trimmed and closed by <|eot_id|>.
      out = m_bos;
      for (const ChatMessage& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    }
    case ChatFormatId::MISTRAL_V1:
    case ChatFormatId::MISTRAL_V3:
    case ChatFormatId::MISTRAL_V3_TEKKEN:
    case ChatFormatId::MISTRAL_V7:
    case ChatFormatId::MISTRAL_V7_TEKKEN:
      return render_mistral(m_id, c, m_bos, m_eos);
    case ChatFormatId::GEMMA: {
      // Gemma 3: no system role; its text and a blank line open the first turn. Messages are trimmed, the system
      // text is not.
      out = m_bos;
      for (size_t i = 0; i < c.turns.size(); ++i) {
        const ChatMessage& m = c.turns[i];
        out += "<start_of_turn>" + std::string(m.role == "assistant" ? "model" : m.role) + "\n";
        if (i == 0 && c.system) out += c.system->content + "\n\n";
        out += trim(m.content) + "<end_of_turn>\n";
      }
      if (add_generation_prompt) out += "<start_of_turn>model\n";
      return out;
    }
    case ChatFormatId::PHI3: {
      // Phi-3 mini and Phi-3.5: an empty system message is left out; without a generation prompt the text ends
      // with EOS.
      for (const ChatMessage& m : messages)
        if (m.role != "system" || !m.content.empty()) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      out += add_generation_prompt ? std::string("<|assistant|>\n") : m_eos;
      return out;
    }
    case ChatFormatId::DEEPSEEK: {
      out = m_bos;
      for (const ChatMessage& m : messages) {
        if (m.role == "system")
          out += m.content + "\n\n";
        else if (m.role == "user")
          out += "User: " + m.content + "\n\n";
        else
          out += "Assistant: " + m.content + m_eos;
      }
      if (add_generation_prompt) out += "Assistant:";
      return out;
    }
  }
  fail(ErrorCategory::INTERNAL, "chat: unknown format id");
}

std::vector<std::string> ChatFormat::end_of_turn_texts() const {
  switch (m_id) {
    case ChatFormatId::CHATML:
      return {"<|im_end|>"};
    case ChatFormatId::LLAMA3:
      return {"<|eot_id|>"};
    case ChatFormatId::GEMMA:
      return {"<end_of_turn>"};
    case ChatFormatId::PHI3:
      return {"<|end|>"};
    default:  // the Llama 2, Mistral and DeepSeek formats end an answer with EOS
      return {m_eos};
  }
}

}  // namespace ferry
