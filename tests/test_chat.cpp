// Chat sessions over a scripted model: each turn evaluates only what the cache lacks, the cache always holds exactly
// the tokens of the whole conversation rendered at once, answers stop at the format's end-of-turn token (or a
// cancellation, and still join the conversation), a conversation that outgrows the context is refused; and the choice
// of a model's chat format (detected, forced, the ChatML fallback, refusals).
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/chat.hpp"
#include "ferry/text/tokenizer.hpp"
#include "support/byte_level.hpp"
#include "support/scripted_lm.hpp"

using namespace ferry;
using Ids = std::vector<int32_t>;

namespace {

// A byte-level vocabulary without merges, so every text's tokens are its bytes and can be written down: the 256 bytes
// (ids 0..255, GPT-2's printable characters), then control tokens.
enum Special : int32_t { BOS = 256, EOS, IM_START, IM_END, kVocab };

using ferry::test::byte_char;

Tokenizer make_tokenizer(bool with_chatml = true) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (unsigned b = 0; b < 256; ++b) {
    tokens.push_back(byte_char(b));
    types.push_back(1);
  }
  for (const char* special : {"<s>", "</s>", "<|im_start|>", "<|im_end|>"}) {
    tokens.emplace_back(with_chatml || special[1] != '|' ? special : special + std::string("x"));
    types.push_back(3);
  }
  return Tokenizer::from_vocab(TokenizerKind::BPE, tokens, {}, types, {}, BOS, EOS);
}

Ids bytes(std::string_view text) {
  Ids ids;
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

Ids join(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

ModelChatFormat chatml(const Tokenizer& t) {
  return chat_format_for_model(t, false, std::string("{{'<|im_start|>' + message['role']}}"), std::nullopt, "m.gguf");
}

class ScriptedModel : public test::ScriptedLm {
 public:
  ScriptedModel(std::vector<int32_t> script, int64_t n_ctx) : ScriptedLm(std::move(script), n_ctx, kVocab) {}
};

struct Reply {
  ChatTurn turn;
  std::string streamed;
};

Reply say(ChatSession& s, const std::string& text, const std::atomic<bool>* cancel = nullptr,
          std::function<void()> after_piece = {}) {
  ChatReplyOptions o;
  o.max_new_tokens = 16;
  o.cancel = cancel;
  Reply r;
  r.turn = s.reply(text, o, [&](std::string_view piece) {
    r.streamed += piece;
    if (after_piece) after_piece();
  });
  return r;
}

// The tokens the cache holds up to `n`.
Ids cache_prefix(const test::ScriptedLm& lm, size_t n) {
  REQUIRE(lm.cache().size() >= n);
  return Ids(lm.cache().begin(), lm.cache().begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace

TEST_CASE("chat session: the second turn reuses the whole first turn and evaluates only the new message") {
  const Tokenizer t = make_tokenizer();
  // Turn 1 answers "Yes" then <|im_end|>; turn 2 answers "No" then <|im_end|>.
  ScriptedModel lm(join({bytes("Yes"), {IM_END}, bytes("No"), {IM_END}}), 256);
  ChatSession s(lm, t, chatml(t), "Be brief.");

  const Reply first = say(s, "Hi");
  const Ids prompt1 = join({{IM_START},
                            bytes("system\nBe brief."),
                            {IM_END},
                            bytes("\n"),
                            {IM_START},
                            bytes("user\nHi"),
                            {IM_END},
                            bytes("\n"),
                            {IM_START},
                            bytes("assistant\n")});
  CHECK(first.turn.position == 0);
  CHECK(first.turn.stats.prompt_tokens == static_cast<int64_t>(prompt1.size()));
  CHECK(first.streamed == "Yes");
  CHECK(first.turn.answer == "Yes");
  CHECK(first.turn.stats.stopped_at_stop_token);
  CHECK(first.turn.stats.stop_token == IM_END);
  REQUIRE(lm.calls().size() == 4);  // the prompt, then Y, e, s fed back; <|im_end|> never is
  CHECK(lm.calls()[0].tokens == prompt1);

  const Reply second = say(s, "Sure?");
  // Everything up to the answer's last token was in the cache: the turn starts right after it, with the end of turn
  // that the model sampled but did not feed.
  const int64_t after_answer = static_cast<int64_t>(prompt1.size()) + 3;
  CHECK(second.turn.position == after_answer);
  const Ids prompt2 = join({{IM_END},
                            bytes("\n"),
                            {IM_START},
                            bytes("user\nSure?"),
                            {IM_END},
                            bytes("\n"),
                            {IM_START},
                            bytes("assistant\n")});
  REQUIRE(lm.calls().size() == 7);
  CHECK(lm.calls()[4].tokens == prompt2);
  CHECK(lm.calls()[4].pos0 == after_answer);
  CHECK(second.turn.stats.prompt_tokens == static_cast<int64_t>(prompt2.size()));
  CHECK(second.turn.answer == "No");

  // The tokens evaluated, turn by turn, are those of the whole conversation rendered at once.
  REQUIRE(s.messages().size() == 5);
  CHECK(s.messages()[4].content == "No");
  const Ids whole = s.conversation_tokens(false);
  CHECK(whole == join({prompt1, bytes("Yes"), prompt2, bytes("No"), {IM_END}, bytes("\n")}));
  CHECK(s.cached() == Ids(whole.begin(), whole.end() - 2));  // all but the last <|im_end|> \n: never evaluated
  CHECK(lm.cache() == s.cached());
}

TEST_CASE("chat session: where the model's tokens differ from the rendering, the turn re-evaluates from there") {
  const Tokenizer t = make_tokenizer();
  // llama2 writes an answer as " ANSWER </s>"; the model answered "ok" without the leading space, so the cache and
  // the rendering part at the answer's first token.
  ScriptedModel lm(join({bytes("ok"), {EOS}, bytes("y"), {EOS}}), 256);
  ModelChatFormat f = chat_format_for_model(t, true, std::nullopt, ChatFormatId::LLAMA2, "m.gguf");
  ChatSession s(lm, t, f);
  const Reply first = say(s, "a");
  CHECK(first.turn.answer == "ok");
  const Ids prompt1 = join({{BOS}, bytes("[INST] a [/INST]")});  // BOS written by the template, not added again
  CHECK(lm.calls()[0].tokens == prompt1);
  const Reply second = say(s, "b");
  CHECK(second.turn.position == static_cast<int64_t>(prompt1.size()));  // the cached "ok" is not the rendered " ok "
  const Ids rendered = s.conversation_tokens(true);
  // Whatever was reused, the cache holds the whole rendering up to the second answer.
  const Ids expected_before_answer = join({prompt1, bytes(" ok "), {EOS, BOS}, bytes("[INST] b [/INST]")});
  CHECK(cache_prefix(lm, expected_before_answer.size()) == expected_before_answer);
  CHECK(Ids(rendered.begin(), rendered.begin() + static_cast<std::ptrdiff_t>(expected_before_answer.size())) ==
        expected_before_answer);
}

TEST_CASE("chat session: a cancelled answer stays in the conversation and the next turn continues after it") {
  const Tokenizer t = make_tokenizer();
  // The call that feeds "g" back returns logits for 'X', never sampled: the flag is seen first.
  ScriptedModel lm(join({bytes("LongX"), bytes("Ok"), {IM_END}}), 256);
  ChatSession s(lm, t, chatml(t));
  std::atomic<bool> cancel{false};
  int pieces = 0;
  const Reply first = say(s, "Tell me", &cancel, [&] {
    if (++pieces == 4) cancel = true;  // Ctrl-C after "Long"
  });
  CHECK(first.turn.stats.cancelled);
  CHECK(first.streamed == "Long");
  CHECK(first.turn.answer == "Long");
  REQUIRE(s.messages().size() == 2);
  CHECK(s.messages()[1].role == "assistant");
  CHECK(s.messages()[1].content == "Long");
  const int64_t cached_after_first = static_cast<int64_t>(s.cached().size());
  CHECK(cached_after_first == first.turn.stats.n_past);
  cancel = false;
  const Reply second = say(s, "Short", &cancel);
  CHECK(second.turn.position == cached_after_first);  // "Long" was fed back: nothing of turn 1 is evaluated again
  CHECK(second.turn.answer == "Ok");
  const Ids whole = s.conversation_tokens(true);
  CHECK(Ids(whole.begin(), whole.begin() + second.turn.position + second.turn.stats.prompt_tokens) ==
        cache_prefix(lm, static_cast<size_t>(second.turn.position + second.turn.stats.prompt_tokens)));
}

TEST_CASE("chat session: a message that would overflow the context is refused; nothing is evaluated") {
  const Tokenizer t = make_tokenizer();
  ScriptedModel lm(join({bytes("Hi"), {IM_END}}), 40);
  ChatSession s(lm, t, chatml(t));
  const Reply ok = say(s, "x");  // 1 + 6 + 1 + 1 + 1 + 10 = 20 tokens, then 2 of answer
  CHECK_FALSE(ok.turn.context_full);
  const size_t calls = lm.calls().size();
  const Reply full = say(s, "a message too long for what is left");
  CHECK(full.turn.context_full);
  CHECK(full.turn.needed > 40);
  CHECK(lm.calls().size() == calls);
  CHECK(s.messages().size() == 2);  // the refused message did not join the conversation
}

TEST_CASE("chat format for a model: detected, forced, ChatML as the fallback, and refusals that name the fix") {
  const Tokenizer t = make_tokenizer();
  const std::string smollm =
      "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are "
      "SmolLM.<|im_end|>\n' }}{% endif %}";
  const ModelChatFormat detected = chat_format_for_model(t, false, smollm, std::nullopt, "m.gguf");
  CHECK(detected.format.id() == ChatFormatId::CHATML);
  CHECK(detected.end_of_turn == Ids{IM_END, EOS});
  CHECK(detected.format.default_system() == "You are SmolLM.");
  CHECK(detected.origin == "tokenizer.chat_template");

  const ModelChatFormat forced = chat_format_for_model(t, false, smollm, ChatFormatId::LLAMA2, "m.gguf");
  CHECK(forced.format.id() == ChatFormatId::LLAMA2);
  CHECK(forced.end_of_turn == Ids{EOS});
  CHECK(forced.origin.find("--chat-format llama2") != std::string::npos);

  for (const std::optional<std::string>& jinja : {std::optional<std::string>{}, std::optional<std::string>{"??"}}) {
    const ModelChatFormat fallback = chat_format_for_model(t, false, jinja, std::nullopt, "m.gguf");
    CHECK(fallback.format.id() == ChatFormatId::CHATML);
    CHECK(fallback.origin.find("<|im_start|>") != std::string::npos);
  }

  auto refused = [](const Tokenizer& tok, const std::optional<std::string>& jinja, std::optional<ChatFormatId> id,
                    const std::string& mentioned) {
    CAPTURE(mentioned);
    try {
      chat_format_for_model(tok, false, jinja, id, "model.gguf");
      FAIL("expected an error");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::UNSUPPORTED);
      const std::string what = e.what();
      CHECK_MESSAGE(what.find("model.gguf") != std::string::npos, what);
      CHECK_MESSAGE(what.find("--chat-format") != std::string::npos, what);
      CHECK_MESSAGE(what.find(mentioned) != std::string::npos, what);
    }
  };
  const Tokenizer no_chatml = make_tokenizer(false);
  refused(no_chatml, std::nullopt, std::nullopt, "no tokenizer.chat_template");
  refused(no_chatml, std::string("unknown"), std::nullopt, "not a format");
  refused(t, std::nullopt, ChatFormatId::GEMMA, "<end_of_turn>");  // a format whose end of turn is not a token
  refused(no_chatml, std::nullopt, ChatFormatId::CHATML, "<|im_end|>");
}

TEST_CASE("chat session: BOS is added in front only when the model wants it and the format does not write it") {
  const Tokenizer t = make_tokenizer();
  ScriptedModel lm({IM_END}, 64);
  ModelChatFormat f = chatml(t);
  f.add_bos = true;
  ChatSession with_bos(lm, t, f);
  say(with_bos, "x");
  CHECK(lm.calls()[0].tokens.front() == BOS);
  CHECK(lm.calls()[0].tokens[1] == IM_START);
  ScriptedModel lm2({EOS}, 64);
  ChatSession llama2(lm2, t, chat_format_for_model(t, true, std::nullopt, ChatFormatId::LLAMA2, "m"));
  say(llama2, "x");
  CHECK(lm2.calls()[0].tokens == join({{BOS}, bytes("[INST] x [/INST]")}));  // one BOS: the template's
}
