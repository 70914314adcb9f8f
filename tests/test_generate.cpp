// generate() end to end over a scripted backend: the tokens the sampler picks come out in order as their pieces, the
// loop stops at EOS (without emitting it), after exactly max_new_tokens, or when the context is full, and every
// forward call gets the right tokens at the right positions.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/tokenizer.hpp"
#include "support/random.hpp"

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

// A backend whose k-th forward call returns logits (random, from a fixed seed) whose maximum is at script[k], so
// greedy sampling reads the script back. It records every call and refuses positions beyond its context.
class ScriptedBackend final : public CausalLm {
 public:
  struct Call {
    std::vector<int32_t> tokens;
    int64_t pos0;
  };

  ScriptedBackend(std::vector<int32_t> script, int64_t n_ctx) : m_script(std::move(script)), m_n_ctx(n_ctx) {}
  int64_t n_ctx() const noexcept override { return m_n_ctx; }
  int64_t n_vocab() const noexcept override { return kVocab; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override {
    REQUIRE_FALSE(all_logits);
    REQUIRE(logits.size() == static_cast<size_t>(kVocab));
    REQUIRE(pos0 + static_cast<int64_t>(tokens.size()) <= m_n_ctx);
    REQUIRE(m_calls.size() < m_script.size());  // generate() asked for more logits than the script has
    const std::vector<float> noise = test::random_floats(kVocab, 1000 + m_calls.size(), -2.0f, 2.0f);
    std::copy(noise.begin(), noise.end(), logits.begin());
    logits[static_cast<size_t>(m_script[m_calls.size()])] = 3.0f;
    m_calls.push_back({std::vector<int32_t>(tokens.begin(), tokens.end()), pos0});
  }
  const std::vector<Call>& calls() const { return m_calls; }

 private:
  std::vector<int32_t> m_script;
  int64_t m_n_ctx;
  std::vector<Call> m_calls;
};

struct Generated {
  GenerateStats stats;
  std::vector<std::string> pieces;
};

Generated run(ScriptedBackend& backend, const std::string& prompt, int64_t max_new_tokens) {
  const Tokenizer tokenizer = make_tokenizer();
  GenerateOptions o;
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
  // 2 prompt tokens in a context of 5: 3 tokens can be generated, the last without a forward call.
  ScriptedBackend backend({THE, CAT, SAT, BANG, THE}, 5);
  const Generated g = run(backend, "hi", 10);
  CHECK(g.pieces == std::vector<std::string>{" the", " cat", " sat"});
  CHECK(g.stats.generated_tokens == 3);
  CHECK(backend.calls().size() == 3);
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
