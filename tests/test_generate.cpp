// generate() end to end over a scripted backend: the tokens the sampler picks come out in order as their pieces, the
// loop stops at EOS or another stop token (without emitting it), after exactly max_new_tokens, when the context is
// full, or when cancelled, and every forward call gets the right tokens at the right positions, also when a
// continuation starts after what the cache holds.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/tokenizer.hpp"
#include "support/scripted_lm.hpp"

using namespace ferry;

namespace {

constexpr const char* kMark = "\xE2\x96\x81";  // '▁'

// A SentencePiece vocabulary small enough to read: ids are the order of `kPieces`.
enum Id : int32_t { UNK, BOS, EOS, MARK, H, I, MARK_H, MARK_HI, THE, CAT, SAT, BANG, kVocab };

Tokenizer make_tokenizer() {
  const std::string m = kMark;
  std::vector<std::string> tokens = {"<unk>", "<s>",    "</s>",    m,         "h",       "i",
                                     m + "h", m + "hi", m + "the", m + "cat", m + "sat", "!"};
  std::vector<float> scores = {0, 0, 0, -50, -100, -100, -1, -2, -3, -4, -5, -6};
  std::vector<int32_t> types = {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  return Tokenizer::from_vocab(TokenizerKind::SPM, tokens, scores, types, {}, BOS, EOS);
}

// The scripted backend over this vocabulary.
class ScriptedBackend : public test::ScriptedLm {
 public:
  ScriptedBackend(std::vector<int32_t> script, int64_t n_ctx) : ScriptedLm(std::move(script), n_ctx, kVocab) {}
};

struct Generated {
  GenerateStats stats;
  std::vector<std::string> pieces;
};

Generated run(ScriptedBackend& backend, const std::string& prompt, int64_t max_new_tokens, GenerateOptions o = {}) {
  const Tokenizer tokenizer = make_tokenizer();
  o.prompt = prompt;
  o.max_new_tokens = max_new_tokens;  // the sampler stays greedy (temperature 0)
  Generated g;
  g.stats = generate(backend, tokenizer, o, [&](std::string_view piece) { g.pieces.emplace_back(piece); });
  return g;
}

}  // namespace

TEST_CASE("generate: greedy tokens come out in order as their pieces, each fed back at the next position") {
  ScriptedBackend backend({THE, CAT, SAT, BANG, THE}, 64);
  const Generated g = run(backend, "hi", 5);
  CHECK(g.pieces == std::vector<std::string>{" the", " cat", " sat", "!", " the"});
  CHECK(g.stats.prompt_tokens == 2);
  CHECK(g.stats.generated_tokens == 5);
  CHECK_FALSE(g.stats.stopped_at_eos);
  // The prompt in one prefill call at position 0, then each sampled token at the position after the last; no call
  // after the last token (its logits would not be used).
  const auto& calls = backend.calls();
  REQUIRE(calls.size() == 5);
  CHECK(calls[0].tokens == std::vector<int32_t>{BOS, MARK_HI});
  CHECK(calls[0].pos0 == 0);
  const std::vector<int32_t> fed = {THE, CAT, SAT, BANG};
  for (size_t i = 1; i < calls.size(); ++i) {
    CAPTURE(i);
    CHECK(calls[i].tokens == std::vector<int32_t>{fed[i - 1]});
    CHECK(calls[i].pos0 == static_cast<int64_t>(1 + i));
  }
}

TEST_CASE("generate: stops after exactly max_new_tokens") {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{3}}) {
    CAPTURE(n);
    ScriptedBackend backend({CAT, SAT, BANG, THE, CAT}, 64);
    const Generated g = run(backend, "hi", n);
    CHECK(g.pieces.size() == static_cast<size_t>(n));
    CHECK(g.stats.generated_tokens == n);
    CHECK_FALSE(g.stats.stopped_at_eos);
    CHECK(backend.calls().size() == static_cast<size_t>(std::max<int64_t>(n, 1)));  // the prefill, then n - 1
  }
}

TEST_CASE("generate: stops at EOS without emitting it") {
  ScriptedBackend backend({CAT, SAT, EOS, BANG}, 64);
  const Generated g = run(backend, "hi", 10);
  CHECK(g.pieces == std::vector<std::string>{" cat", " sat"});  // no third piece, not even an empty one
  CHECK(g.stats.stopped_at_eos);
  CHECK(g.stats.generated_tokens == 2);
  CHECK(backend.calls().size() == 3);  // EOS is never fed back
  // EOS as the very first token: nothing at all.
  ScriptedBackend at_once({EOS}, 64);
  const Generated none = run(at_once, "hi", 10);
  CHECK(none.pieces.empty());
  CHECK(none.stats.stopped_at_eos);
  CHECK(none.stats.generated_tokens == 0);
}

TEST_CASE("generate: stops when the context is full; a prompt that fills it is refused") {
  // 2 prompt tokens in a context of 5: the 3 free positions take 3 generated tokens, and a 4th comes from the logits
  // of the last position, without a forward call.
  ScriptedBackend backend({THE, CAT, SAT, BANG, THE}, 5);
  const Generated g = run(backend, "hi", 10);
  CHECK(g.pieces == std::vector<std::string>{" the", " cat", " sat", "!"});
  CHECK(g.stats.generated_tokens == 4);
  CHECK(g.stats.stopped_at_context);
  CHECK(g.stats.n_past == 5);  // every position of the context is filled
  CHECK(backend.calls().size() == 4);
  CHECK(backend.calls().back().pos0 == 4);
  ScriptedBackend tiny({THE}, 2);
  try {
    run(tiny, "hi", 10);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("context holds 2") != std::string::npos);
  }
  CHECK(tiny.calls().empty());
}

TEST_CASE("generate: with an empty prompt the first piece loses SentencePiece's leading space") {
  ScriptedBackend backend({THE, CAT}, 64);
  const Generated g = run(backend, "", 2);
  CHECK(g.pieces == std::vector<std::string>{"the", " cat"});
  REQUIRE_FALSE(backend.calls().empty());
  CHECK(backend.calls()[0].tokens == std::vector<int32_t>{BOS});
}

TEST_CASE("generate: stops at a stop token (a chat format's end of turn) without emitting or feeding it") {
  GenerateOptions o;
  o.stop_tokens = {BANG};
  ScriptedBackend backend({CAT, SAT, BANG, THE}, 64);
  const Generated g = run(backend, "hi", 10, o);
  CHECK(g.pieces == std::vector<std::string>{" cat", " sat"});
  CHECK(g.stats.stopped_at_stop_token);
  CHECK_FALSE(g.stats.stopped_at_eos);
  CHECK(g.stats.stop_token == BANG);
  CHECK(g.stats.tokens == std::vector<int32_t>{CAT, SAT});
  CHECK(backend.calls().size() == 3);  // the prefill, CAT and SAT: the stop token is never fed back
  CHECK(g.stats.n_past == 4);          // BOS, ▁hi, ▁cat, ▁sat
  // EOS still stops, and says so.
  ScriptedBackend eos({CAT, EOS}, 64);
  const Generated e = run(eos, "hi", 10, o);
  CHECK(e.stats.stopped_at_eos);
  CHECK_FALSE(e.stats.stopped_at_stop_token);
  CHECK(e.stats.stop_token == EOS);
}

TEST_CASE("generate: a cancel flag set while streaming stops before the next token; what was fed stays counted") {
  const Tokenizer tokenizer = make_tokenizer();
  for (const size_t after : {size_t{1}, size_t{3}}) {
    CAPTURE(after);
    ScriptedBackend backend({THE, CAT, SAT, BANG, THE, CAT}, 64);
    std::atomic<bool> cancel{false};
    GenerateOptions o;
    o.prompt = "hi";
    o.max_new_tokens = 10;
    o.cancel = &cancel;
    std::vector<std::string> pieces;
    const GenerateStats stats = generate(backend, tokenizer, o, [&](std::string_view piece) {
      pieces.emplace_back(piece);
      if (pieces.size() == after) cancel = true;  // as a SIGINT handler would, between two tokens
    });
    CHECK(stats.cancelled);
    CHECK(pieces.size() == after);
    CHECK(stats.generated_tokens == static_cast<int64_t>(after));
    // The last emitted token was fed back before the flag was seen: the cache holds the whole partial answer.
    CHECK(backend.calls().size() == after + 1);
    CHECK(stats.n_past == 2 + static_cast<int64_t>(after));
    CHECK(backend.cache().size() == static_cast<size_t>(stats.n_past));
  }
  // Set before generation: the prompt is evaluated, nothing is sampled.
  ScriptedBackend backend({THE}, 64);
  std::atomic<bool> cancel{true};
  GenerateOptions o;
  o.cancel = &cancel;
  const Generated g = run(backend, "hi", 10, o);
  CHECK(g.stats.cancelled);
  CHECK(g.pieces.empty());
  CHECK(g.stats.n_past == 2);
}

TEST_CASE("generate: a continuation goes in at pos0, after the cached tokens, and counts the context from there") {
  const Tokenizer tokenizer = make_tokenizer();
  ScriptedBackend backend({CAT, SAT, THE, BANG, CAT, SAT}, 8);
  GenerateOptions first;
  first.prompt = "hi";
  first.max_new_tokens = 2;
  const GenerateStats a = generate(backend, tokenizer, first, {});
  REQUIRE(a.n_past == 3);  // BOS ▁hi ▁cat (▁sat was sampled last, never fed)
  GenerateOptions next;
  next.prompt_tokens = {SAT, MARK_H};  // the token not fed, then the new prompt
  next.pos0 = a.n_past;
  next.max_new_tokens = 10;
  std::vector<std::string> pieces;
  const GenerateStats b = generate(backend, tokenizer, next, [&](std::string_view p) { pieces.emplace_back(p); });
  const auto& calls = backend.calls();
  REQUIRE(calls.size() == 6);
  CHECK(calls[2].tokens == std::vector<int32_t>{SAT, MARK_H});
  CHECK(calls[2].pos0 == 3);
  CHECK(calls[3].pos0 == 5);
  CHECK(calls[4].pos0 == 6);
  CHECK(calls[5].pos0 == 7);  // the last position of the context is used too
  // 5 positions were taken before the answer: the 3 left are filled by 3 tokens, and a 4th comes from the logits of
  // the last position without a forward call. (No prompt text: the first piece loses its leading space, as an
  // answer's does.)
  CHECK(pieces == std::vector<std::string>{"the", "!", " cat", " sat"});
  CHECK(b.stopped_at_context);
  CHECK(b.n_past == 8);
  CHECK(backend.cache() == std::vector<int32_t>{BOS, MARK_HI, CAT, SAT, MARK_H, THE, BANG, CAT});
  // A continuation that does not fit after the cached tokens is refused, naming both numbers.
  ScriptedBackend full({CAT, SAT}, 8);
  generate(full, tokenizer, first, {});
  next.pos0 = 6;
  try {
    generate(full, tokenizer, next, {});
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("after 6 tokens") != std::string::npos);
  }
}
