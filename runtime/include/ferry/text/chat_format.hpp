// Chat formats: how a conversation (system, user and assistant messages) becomes the text an instruction-tuned model
// was trained on. A GGUF file carries its format as a Jinja template (tokenizer.chat_template); ferry does not run
// Jinja. As llama.cpp does, it recognises the template by distinctive substrings and renders the format with its own
// code, producing exactly what the model's official template produces for plain text messages:
//
//   chatml             <|im_start|>ROLE\nTEXT<|im_end|>\n ... <|im_start|>assistant\n     (SmolLM2, Qwen, Yi, ...)
//   llama2             <s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nUSER [/INST] ANSWER </s><s>[INST] ...  (Llama-2-chat)
//   llama3             <|begin_of_text|><|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>...
//   mistral            <s> [INST] SYS\n\nUSER [/INST] ANSWER</s> [INST] ...   (Mistral 7B Instruct v0.1/v0.2: "v1")
//   mistral-v3         <s>[INST] USER[/INST] ANSWER</s>[INST] SYS\n\nUSER[/INST]  (system on the last user message)
//   mistral-v3-tekken  as mistral-v3 without the spaces (Mistral NeMo)
//   mistral-v7         <s>[SYSTEM_PROMPT] SYS[/SYSTEM_PROMPT][INST] USER[/INST] ANSWER</s>...
//   mistral-v7-tekken  as mistral-v7 without the spaces (Mistral Small 3)
//   gemma              <bos><start_of_turn>user\nSYS\n\nUSER<end_of_turn>\n<start_of_turn>model\n  (Gemma 3: the
//                      system message is folded into the first user turn)
//   phi3               <|system|>\nSYS<|end|>\n<|user|>\nUSER<|end|>\n<|assistant|>\n  (Phi-3 mini, Phi-3.5)
//   deepseek           <｜begin▁of▁sentence｜>SYS\n\nUser: USER\n\nAssistant: ANSWER<｜end▁of▁sentence｜>User: ...
//                      (deepseek-llm chat, DeepSeek-V2)
//
// The BOS and EOS tokens are written as text where the template writes them (bos_token, eos_token), so the text
// tokenized with special tokens parsed gives the model's token sequence; nothing else adds a BOS in front.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry {

enum class ChatFormatId {
  CHATML,
  LLAMA2,
  LLAMA3,
  MISTRAL_V1,
  MISTRAL_V3,
  MISTRAL_V3_TEKKEN,
  MISTRAL_V7,
  MISTRAL_V7_TEKKEN,
  GEMMA,
  PHI3,
  DEEPSEEK,
};

// role: "system" (only as the first message), "user" or "assistant".
struct ChatMessage {
  std::string role;
  std::string content;
};

std::span<const ChatFormatId> all_chat_formats() noexcept;
// The name on the command line: "chatml", "mistral-v3", ...
std::string_view chat_format_name(ChatFormatId id) noexcept;
// "chatml, llama2, ..." for messages and help text.
std::string chat_format_names();
// Exact names only; nullopt for anything else.
std::optional<ChatFormatId> parse_chat_format(std::string_view name) noexcept;

// The format a Jinja chat template (tokenizer.chat_template) implements, from substrings only the format's templates
// contain; a template that is just a format's name names it. nullopt: not one ferry renders.
std::optional<ChatFormatId> detect_chat_format(std::string_view chat_template);

// The system message a ChatML template writes when the conversation has none (SmolLM2: "You are a helpful AI
// assistant named SmolLM, trained by Hugging Face"), read from the string literal that holds it; "" when it has none.
std::string chatml_default_system(std::string_view chat_template);

class ChatFormat {
 public:
  // bos_text / eos_text: the vocabulary's BOS and EOS tokens as text ("<s>", "</s>"); "" when it has none.
  // default_system: written as the system message when a conversation has none (formats with a system role only).
  ChatFormat(ChatFormatId id, std::string bos_text, std::string eos_text, std::string default_system = {});

  ChatFormatId id() const noexcept { return m_id; }
  std::string_view name() const noexcept { return chat_format_name(m_id); }
  const std::string& default_system() const noexcept { return m_default_system; }

  // The conversation as the model's text; with add_generation_prompt, followed by what opens the assistant's answer
  // (formats whose template has no such text, like llama2 and mistral, render the same either way). Throws
  // INVALID_ARGUMENT for another role or a system message that is not first.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt) const;

  // The token texts that end an assistant turn ("<|im_end|>", "<|eot_id|>", or the EOS text): where generation stops.
  std::vector<std::string> end_of_turn_texts() const;

 private:
  ChatFormatId m_id;
  std::string m_bos;
  std::string m_eos;
  std::string m_default_system;
};

}  // namespace ferry
