// Chat formats: every format renders a conversation with a system message, two questions and an answer to exactly the
// text its model's official template produces (written out by hand below from those templates), the variants without
// a generation prompt or a system message, the names, and detection from excerpts of real templates.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/chat_format.hpp"

using namespace ferry;

namespace {

// The user's first message ends with a space and the answer starts with one: the templates that trim show it.
const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "Hi! "},
    {"assistant", " Hello, friend."},
    {"user", "What is 2+2?"},
};

struct Expected {
  ChatFormatId id;
  const char* bos;
  const char* eos;
  const char* text;  // kConversation rendered with the generation prompt
};

// clang-format off
const Expected kExpected[] = {
    {ChatFormatId::CHATML, "<|im_start|>", "<|im_end|>",
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi! <|im_end|>\n"
     "<|im_start|>assistant\n Hello, friend.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
     "<|im_start|>assistant\n"},
    {ChatFormatId::LLAMA2, "<s>", "</s>",
     "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello, friend. </s><s>[INST] What is 2+2? [/INST]"},
    {ChatFormatId::LLAMA3, "<|begin_of_text|>", "<|end_of_text|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\nHello, friend.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
     "<|start_header_id|>assistant<|end_header_id|>\n\n"},
    {ChatFormatId::MISTRAL_V1, "<s>", "</s>",
     "<s> [INST] You are terse.\n\nHi!  [/INST]  Hello, friend.</s> [INST] What is 2+2? [/INST]"},
    {ChatFormatId::MISTRAL_V3, "<s>", "</s>",
     "<s>[INST] Hi! [/INST] Hello, friend.</s>[INST] You are terse.\n\nWhat is 2+2?[/INST]"},
    {ChatFormatId::MISTRAL_V3_TEKKEN, "<s>", "</s>",
     "<s>[INST]Hi! [/INST] Hello, friend.</s>[INST]You are terse.\n\nWhat is 2+2?[/INST]"},
    {ChatFormatId::MISTRAL_V7, "<s>", "</s>",
     "<s>[SYSTEM_PROMPT] You are terse.[/SYSTEM_PROMPT][INST] Hi! [/INST]  Hello, friend.</s>[INST] What is 2+2?[/INST]"},
    {ChatFormatId::MISTRAL_V7_TEKKEN, "<s>", "</s>",
     "<s>[SYSTEM_PROMPT]You are terse.[/SYSTEM_PROMPT][INST]Hi! [/INST] Hello, friend.</s>[INST]What is 2+2?[/INST]"},
    {ChatFormatId::GEMMA, "<bos>", "<eos>",
     "<bos><start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello, friend.<end_of_turn>\n"
     "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"},
    {ChatFormatId::PHI3, "<s>", "<|endoftext|>",
     "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi! <|end|>\n<|assistant|>\n Hello, friend.<|end|>\n"
     "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"},
    {ChatFormatId::DEEPSEEK, "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
     "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
     "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>You are terse.\n\nUser: Hi! \n\n"
     "Assistant:  Hello, friend.<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"
     "User: What is 2+2?\n\nAssistant:"},
};
// clang-format on

ChatFormat format_of(const Expected& e) { return ChatFormat(e.id, e.bos, e.eos); }

}  // namespace

TEST_CASE("chat formats: a conversation with a system message renders as each official template does") {
  REQUIRE(std::size(kExpected) == all_chat_formats().size());  // every format has its expected text
  for (const Expected& e : kExpected) {
    const std::string name(chat_format_name(e.id));
    CAPTURE(name);
    CHECK(format_of(e).render(kConversation, true) == e.text);
  }
}

TEST_CASE("chat formats: without the generation prompt") {
  for (const Expected& e : kExpected) {
    const std::string name(chat_format_name(e.id));
    CAPTURE(name);
    const std::string with = format_of(e).render(kConversation, true);
    const std::string without = format_of(e).render(kConversation, false);
    switch (e.id) {
      case ChatFormatId::CHATML:
        CHECK(with == without + "<|im_start|>assistant\n");
        break;
      case ChatFormatId::LLAMA3:
        CHECK(with == without + "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
      case ChatFormatId::GEMMA:
        CHECK(with == without + "<start_of_turn>model\n");
        break;
      case ChatFormatId::PHI3:  // Phi-3's template ends a conversation without one with EOS
        CHECK(with == without.substr(0, without.size() - 13) + "<|assistant|>\n");
        CHECK(without.ends_with("<|end|>\n<|endoftext|>"));
        break;
      case ChatFormatId::DEEPSEEK:
        CHECK(with == without + "Assistant:");
        break;
      default:  // the [INST] templates have no generation prompt: the answer follows [/INST]
        CHECK(with == without);
        CHECK(with.ends_with("[/INST]"));
    }
  }
  // A conversation that ends with an answer, as the next turn renders it.
  std::vector<ChatMessage> answered = kConversation;
  answered.push_back({"assistant", "4"});
  CHECK(ChatFormat(ChatFormatId::CHATML, "", "")
            .render(answered, false)
            .ends_with("<|im_start|>assistant\n4<|im_end|>\n"));
  CHECK(ChatFormat(ChatFormatId::LLAMA2, "<s>", "</s>").render(answered, false).ends_with("[/INST] 4 </s>"));
  // mistral-v3 puts the system message on the last message only when that is a user message.
  CHECK(ChatFormat(ChatFormatId::MISTRAL_V3, "<s>", "</s>").render(answered, false) ==
        "<s>[INST] Hi! [/INST] Hello, friend.</s>[INST] What is 2+2?[/INST] 4</s>");
}

TEST_CASE("chat formats: without a system message; ChatML's default one from the template") {
  const std::vector<ChatMessage> plain = {{"user", "Hi"}};
  CHECK(ChatFormat(ChatFormatId::CHATML, "", "").render(plain, true) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(ChatFormat(ChatFormatId::CHATML, "", "", "Be kind.").render(plain, true) ==
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // A system message given replaces the default one.
  CHECK(ChatFormat(ChatFormatId::CHATML, "", "", "Be kind.").render(kConversation, true) == kExpected[0].text);
  CHECK(ChatFormat(ChatFormatId::LLAMA2, "<s>", "</s>").render(plain, true) == "<s>[INST] Hi [/INST]");
  CHECK(ChatFormat(ChatFormatId::GEMMA, "<bos>", "<eos>").render(plain, true) ==
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  CHECK(ChatFormat(ChatFormatId::MISTRAL_V1, "<s>", "</s>").render(plain, true) == "<s> [INST] Hi [/INST]");
  CHECK(ChatFormat(ChatFormatId::MISTRAL_V7, "<s>", "</s>").render(plain, true) == "<s>[INST] Hi[/INST]");
  // Phi-3.5 leaves an empty system message out.
  CHECK(ChatFormat(ChatFormatId::PHI3, "", "</s>")
            .render(std::vector<ChatMessage>{{"system", ""}, {"user", "Hi"}}, true) ==
        "<|user|>\nHi<|end|>\n<|assistant|>\n");
}

TEST_CASE("chat formats: roles other than system, user and assistant, and a late system message, are refused") {
  const ChatFormat f(ChatFormatId::CHATML, "", "");
  for (const std::vector<ChatMessage>& bad :
       {std::vector<ChatMessage>{{"tool", "x"}}, std::vector<ChatMessage>{{"user", "a"}, {"system", "b"}}}) {
    try {
      f.render(bad, true);
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::INVALID_ARGUMENT);
    }
  }
}

TEST_CASE("chat formats: end-of-turn tokens") {
  CHECK(ChatFormat(ChatFormatId::CHATML, "", "</s>").end_of_turn_texts() == std::vector<std::string>{"<|im_end|>"});
  CHECK(ChatFormat(ChatFormatId::LLAMA3, "", "</s>").end_of_turn_texts() == std::vector<std::string>{"<|eot_id|>"});
  CHECK(ChatFormat(ChatFormatId::GEMMA, "", "<eos>").end_of_turn_texts() == std::vector<std::string>{"<end_of_turn>"});
  CHECK(ChatFormat(ChatFormatId::PHI3, "", "</s>").end_of_turn_texts() == std::vector<std::string>{"<|end|>"});
  for (const ChatFormatId id : {ChatFormatId::LLAMA2, ChatFormatId::MISTRAL_V1, ChatFormatId::MISTRAL_V3,
                                ChatFormatId::MISTRAL_V7_TEKKEN, ChatFormatId::DEEPSEEK})
    CHECK(ChatFormat(id, "<s>", "</x>").end_of_turn_texts() == std::vector<std::string>{"</x>"});
}

TEST_CASE("chat formats: names") {
  for (const ChatFormatId id : all_chat_formats()) {
    const std::string name(chat_format_name(id));
    CAPTURE(name);
    CHECK(parse_chat_format(name) == id);
    CHECK(chat_format_names().find(name) != std::string::npos);
  }
  CHECK(chat_format_names().starts_with("chatml, llama2, llama3, mistral, "));
  CHECK_FALSE(parse_chat_format("ChatML").has_value());
  CHECK_FALSE(parse_chat_format("").has_value());
  CHECK_FALSE(parse_chat_format("vicuna").has_value());
}

// Excerpts of the templates real GGUF files carry (the distinctive parts, written out from the models' published
// tokenizer_config.json), as the file holds them: "\\n" is the two characters of a Jinja escape, "\n" a newline that
// was already one in the JSON.
TEST_CASE("chat formats: detected from real templates") {
  struct Case {
    const char* model;
    const char* jinja;
    std::optional<ChatFormatId> expected;
  };
  const Case cases[] = {
      {"SmolLM2-Instruct",
       "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
       "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>'"
       " + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
       ChatFormatId::CHATML},
      {"Qwen2.5-Instruct",
       "{%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
       "assistant.<|im_end|>\\n' }}\n    {%- endif %}",
       ChatFormatId::CHATML},
      {"Llama-2-chat",
       "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
       "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
       "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
       ChatFormatId::LLAMA2},
      {"Mistral-7B-Instruct-v0.2 (2023)",
       "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
       "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}",
       ChatFormatId::MISTRAL_V1},
      {"Mistral-7B-Instruct-v0.2 (v1 template)",
       "{%- if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + "
       "message['content'] + ' [/INST]' }}",
       ChatFormatId::MISTRAL_V1},
      {"Mistral-7B-Instruct-v0.3",
       "{{- \"[AVAILABLE_TOOLS] [\" }}\n{%- if loop.last and system_message is defined %}\n{{- \"[INST] \" + "
       "system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}",
       ChatFormatId::MISTRAL_V3},
      {"Mistral-Nemo-Instruct-2407",
       "{{- \"[AVAILABLE_TOOLS][\" }}\n{%- if loop.last and system_message is defined %}\n{{- \"[INST]\" + "
       "system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}",
       ChatFormatId::MISTRAL_V3_TEKKEN},
      {"Mistral-Large-Instruct-2411",
       "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == "
       "'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}",
       ChatFormatId::MISTRAL_V7},
      {"Mistral-Small-24B-Instruct-2501",
       "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{%- for message in loop_messages %}{%- if "
       "message['role'] == 'user' %}{{- '[INST]' + message['content'] + '[/INST]' }}",
       ChatFormatId::MISTRAL_V7_TEKKEN},
      {"Meta-Llama-3-8B-Instruct",
       "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
       " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}",
       ChatFormatId::LLAMA3},
      {"gemma-3-it",
       "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}{%- if message['content'] "
       "is string -%}{{ message['content'] | trim }}",
       ChatFormatId::GEMMA},
      {"Phi-3-mini-4k-instruct",
       "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif "
       "message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}",
       ChatFormatId::PHI3},
      {"deepseek-llm-7b-chat",
       "{% if message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n\n' }}{% elif message['role'] == "
       "'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}",
       ChatFormatId::DEEPSEEK},
      {"a template that is a format's name", "mistral-v7", ChatFormatId::MISTRAL_V7},
      {"phi-4 (ChatML markers, another layout)", "{{'<|im_start|>system<|im_sep|>' + message['content']", std::nullopt},
      {"vicuna", "{{-'USER: ' + message['content'] + '\\n'-}}{{-'ASSISTANT: ' + message['content']", std::nullopt},
      {"zephyr", "{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}", std::nullopt},
      {"empty", "", std::nullopt},
  };
  for (const Case& c : cases) {
    const std::string model = c.model;
    CAPTURE(model);
    CHECK(detect_chat_format(c.jinja) == c.expected);
  }
}

TEST_CASE("chat formats: ChatML's default system message is read from the template's literal") {
  CHECK(chatml_default_system("{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                              "Hugging Face<|im_end|>\n' }}{{'<|im_start|>' + message['role']") ==
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  // Qwen2.5: the system message given comes first in the template; the default one is in the else branch. Escapes
  // are undone.
  CHECK(chatml_default_system("{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}"
                              "{{- \"<|im_start|>system\\nYou are \\\"Qwen\\\".\\nHelpful.<|im_end|>\\n\" }}") ==
        "You are \"Qwen\".\nHelpful.");
  // Templates without one.
  CHECK(chatml_default_system("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}") ==
        "");
  CHECK(chatml_default_system("{{ '<|im_start|>system\\n' + system + '<|im_end|>' }}") == "");
  CHECK(chatml_default_system("'<|im_start|>system\\nunterminated<|im_end|>") == "");
}
