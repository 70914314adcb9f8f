// Tokenizer tests on hand-built vocabularies, where the expected encodings can be worked out by hand.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/tokenizer.hpp"

using ferry::Tokenizer;
using ferry::TokenizerKind;

namespace {

constexpr const char* kMark = "\xE2\x96\x81";  // '▁'

struct VocabBuilder {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int32_t add(const std::string& piece, float score = 0.0f, int32_t type = 1) {
    tokens.push_back(piece);
    scores.push_back(score);
    types.push_back(type);
    return static_cast<int32_t>(tokens.size()) - 1;
  }
};

std::string m(const std::string& s) {  // spaces to '▁'
  std::string out;
  for (char c : s) out += c == ' ' ? std::string(kMark) : std::string(1, c);
  return out;
}

Tokenizer make_spm(VocabBuilder& v) {
  v.add("<unk>", 0, 2);
  v.add("<s>", 0, 3);
  v.add("</s>", 0, 3);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v.add(name, 0, 6);
  }
  for (const char* c : {"h", "e", "l", "o", "w", "r", "d"}) v.add(c, -100);
  v.add(kMark, -50);
  v.add(m(" h"), -1);
  v.add(m(" he"), -2);
  v.add(m(" hel"), -3);
  v.add(m(" hell"), -4);
  v.add(m(" hello"), -5);
  v.add("ll", -10);
  v.add(m(" w"), -6);
  v.add("or", -7);
  v.add(m(" wor"), -8);
  v.add("ld", -9);
  v.add(m(" world"), -11);
  return Tokenizer::from_vocab(TokenizerKind::SPM, v.tokens, v.scores, v.types, {}, 1, 2);
}

int32_t id_of(const VocabBuilder& v, const std::string& piece) {
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.tokens[i] == piece) return static_cast<int32_t>(i);
  FAIL("piece not in test vocabulary: " << piece);
  return -1;
}

}  // namespace

TEST_CASE("spm: merges by score into whole words") {
  VocabBuilder v;
  const Tokenizer t = make_spm(v);
  const auto ids = t.encode("hello world", true);
  REQUIRE(ids.size() == 3);
  CHECK(ids[0] == 1);
  CHECK(ids[1] == id_of(v, m(" hello")));
  CHECK(ids[2] == id_of(v, m(" world")));
  CHECK(t.decode(ids) == "hello world");
}

TEST_CASE("spm: a higher-scoring inner pair does not win when the outer merge comes first") {
  VocabBuilder v;
  const Tokenizer t = make_spm(v);
  // "ll" (-10) scores lower than the chain " h" .. " hell" (-1 .. -4), so "ll" never forms inside "hello".
  const auto ids = t.encode("hell", false);
  REQUIRE(ids.size() == 1);
  CHECK(ids[0] == id_of(v, m(" hell")));
  // On its own, "ll" forms: "oll" -> ▁ o ll? no: "▁o" is no piece, so ▁, o, ll.
  const auto ids2 = t.encode("oll", false);
  REQUIRE(ids2.size() == 3);
  CHECK(ids2[0] == id_of(v, kMark));
  CHECK(ids2[1] == id_of(v, "o"));
  CHECK(ids2[2] == id_of(v, "ll"));
}

TEST_CASE("spm: byte fallback for characters outside the vocabulary, and round trip") {
  VocabBuilder v;
  const Tokenizer t = make_spm(v);
  const auto ids = t.encode("\xC3\xA9!", false);  // "é!"
  REQUIRE(ids.size() == 4);
  CHECK(ids[0] == id_of(v, kMark));
  CHECK(ids[1] == id_of(v, "<0xC3>"));
  CHECK(ids[2] == id_of(v, "<0xA9>"));
  CHECK(ids[3] == id_of(v, "<0x21>"));
  CHECK(t.decode(ids) == "\xC3\xA9!");
  for (const char* text : {"hello  world",
                           "w\no\tr\xE2\x82\xAC"
                           "d",
                           "  leading", "trailing  ", "x"}) {
    CHECK(t.decode(t.encode(text, true)) == text);
  }
}

TEST_CASE("spm: control tokens decode to nothing; out-of-range ids are refused") {
  VocabBuilder v;
  const Tokenizer t = make_spm(v);
  CHECK(t.token_to_piece(1).empty());
  CHECK(t.token_to_piece(2).empty());
  CHECK_THROWS_AS(t.token_to_piece(static_cast<int32_t>(t.vocab_size())), ferry::Error);
  CHECK_THROWS_AS(t.token_to_piece(-1), ferry::Error);
}

namespace {

Tokenizer make_bpe(VocabBuilder& v) {
  // GPT-2 maps the space byte to U+0120 ('Ġ').
  const std::string G = "\xC4\xA0";
  for (const char* c : {"h", "e", "l", "o", "w", "r", "d", "'", "s", "1", "2", "!", "\n"}) v.add(c);
  v.add("\xC4\x8A");  // '\n' mapped (U+010A)
  v.add(G);
  for (const std::string& p :
       {std::string("he"), std::string("ll"), std::string("hell"), std::string("hello"), G + "w", std::string("or"),
        G + "wor", std::string("ld"), G + "world", std::string("'s"), std::string("12")})
    v.add(p);
  v.add("<|endoftext|>", 0, 3);
  std::vector<std::string> merges = {"h e",      "l l", "he ll",      "hell o", G + " w", "o r",
                                     G + "w or", "l d", G + "wor ld", "' s",    "1 2"};
  // GPT-2's own pre-tokenizer: these tests were worked out by its rules (contractions, " ?" before words).
  ferry::TokenizerOptions options;
  options.pre = "gpt2";
  return Tokenizer::from_vocab(TokenizerKind::BPE, v.tokens, {}, {}, merges, -1, id_of(v, "<|endoftext|>"), options);
}

}  // namespace

TEST_CASE("bpe: merges in rank order within pre-tokenized words") {
  VocabBuilder v;
  const Tokenizer t = make_bpe(v);
  const std::string G = "\xC4\xA0";
  const auto ids = t.encode("hello world", false);
  REQUIRE(ids.size() == 2);
  CHECK(ids[0] == id_of(v, "hello"));
  CHECK(ids[1] == id_of(v, G + "world"));
  // contraction split, digits as their own word, punctuation as its own word
  const auto ids2 = t.encode("hello's 12!", false);
  std::vector<int32_t> expected = {id_of(v, "hello"), id_of(v, "'s"), id_of(v, G), id_of(v, "12"), id_of(v, "!")};
  CHECK(ids2 == expected);
  // two spaces before a word: the first stands alone, the second joins the word
  const auto ids3 = t.encode("hello  world", false);
  std::vector<int32_t> expected3 = {id_of(v, "hello"), id_of(v, G), id_of(v, G + "world")};
  CHECK(ids3 == expected3);
}

TEST_CASE("bpe: decoding maps the byte alphabet back; round trips") {
  VocabBuilder v;
  const Tokenizer t = make_bpe(v);
  for (const char* text : {"hello world", "hello\nworld", "held  lord!", "12 12"}) {
    CHECK(t.decode(t.encode(text, false)) == text);
  }
}

TEST_CASE("from_vocab rejects inconsistent vocabularies") {
  CHECK_THROWS_AS(Tokenizer::from_vocab(TokenizerKind::SPM, {}, {}, {}, {}, -1, -1), ferry::Error);
  CHECK_THROWS_AS(Tokenizer::from_vocab(TokenizerKind::SPM, {"a", "b"}, {0.0f}, {}, {}, -1, -1), ferry::Error);
  CHECK_THROWS_AS(Tokenizer::from_vocab(TokenizerKind::SPM, {"a", "b"}, {}, {}, {}, 5, -1), ferry::Error);
}

TEST_CASE("bpe: a long unbroken word merges leftmost-first in O(n log n)") {
  // 100001 'l': the merge "l l" pairs them from the left, leaving one 'l'. Rescanning every pair per merge (the
  // textbook loop) would take minutes here; a hostile prompt must not stall the tokenizer.
  VocabBuilder v;
  const Tokenizer t = make_bpe(v);
  const auto ids = t.encode(std::string(100001, 'l'), false);
  REQUIRE(ids.size() == 50001);
  const int32_t ll = id_of(v, "ll"), l = id_of(v, "l");
  int wrong = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) wrong += ids[i] != ll;
  CHECK(wrong == 0);
  CHECK(ids.back() == l);
}

TEST_CASE("spm: byte tokens must be exactly <0xHH>; malformed ones are ordinary pieces") {
  // sscanf("%2X") would read "<0x-1>" as 0xFFFFFFFF and index far outside the 256 byte slots.
  VocabBuilder v;
  v.add("<unk>", 0, 2);
  const int32_t minus_one = v.add("<0x-1>", 0, 6);
  v.add("<0x-F>", 0, 6);
  v.add("<0x4>", 0, 6);
  v.add("<0xZZ>", 0, 6);
  const int32_t byte_a = v.add("<0x41>", 0, 6);
  v.add(kMark, -1);
  const Tokenizer t = Tokenizer::from_vocab(TokenizerKind::SPM, v.tokens, v.scores, v.types, {}, -1, -1);
  const auto ids = t.encode("A", false);  // '▁' then 'A' by byte fallback
  REQUIRE(ids.size() == 2);
  CHECK(ids[1] == byte_a);
  CHECK(t.token_to_piece(byte_a) == "A");
  CHECK(t.token_to_piece(minus_one) == "<0x-1>");
}

TEST_CASE("spm: the highest-scoring pair merges first, wherever it stands") {
  // "ab" scores -5 and "bc" -1: "abc" merges b+c first (the higher score, though it is not leftmost), then nothing
  // joins a with bc, so it encodes as [a, bc]; with the scores swapped it encodes as [ab, c].
  for (const bool bc_first : {true, false}) {
    CAPTURE(bc_first);
    VocabBuilder v;
    v.add("<unk>", 0, 2);
    const int32_t a = v.add("a", -10), b = v.add("b", -10), c = v.add("c", -10);
    const int32_t ab = v.add("ab", bc_first ? -5.0f : -1.0f), bc = v.add("bc", bc_first ? -1.0f : -5.0f);
    (void)b;
    const int32_t mark = v.add(kMark, -20);
    const Tokenizer t = Tokenizer::from_vocab(TokenizerKind::SPM, v.tokens, v.scores, v.types, {}, -1, -1);
    const std::vector<int32_t> ids = t.encode("abc", false);  // '▁' + "abc": '▁' has no pair with a
    const std::vector<int32_t> expected =
        bc_first ? std::vector<int32_t>{mark, a, bc} : std::vector<int32_t>{mark, ab, c};
    CHECK(ids == expected);
  }
}

TEST_CASE("bpe: of two overlapping merges the lower rank wins, wherever it stands") {
  // "abc" offers "a b" and "b c"; they overlap on b, so only the lower-ranked one can apply. With "a b" first the
  // word is [ab, c]; with "b c" first it is [a, bc] (the merge list is in priority order: index = rank).
  for (const bool ab_first : {true, false}) {
    CAPTURE(ab_first);
    VocabBuilder v;
    const int32_t a = v.add("a"), b = v.add("b"), c = v.add("c"), ab = v.add("ab"), bc = v.add("bc");
    (void)b;
    const std::vector<std::string> merges =
        ab_first ? std::vector<std::string>{"a b", "b c"} : std::vector<std::string>{"b c", "a b"};
    const Tokenizer t = Tokenizer::from_vocab(TokenizerKind::BPE, v.tokens, {}, {}, merges, -1, -1);
    const std::vector<int32_t> expected = ab_first ? std::vector<int32_t>{ab, c} : std::vector<int32_t>{a, bc};
    CHECK(t.encode("abc", false) == expected);
    // The same pair later in a longer word: "cabc" -> c + (ab c | a bc); rank decides, not position.
    std::vector<int32_t> later = {c};
    later.insert(later.end(), expected.begin(), expected.end());
    CHECK(t.encode("cabc", false) == later);
  }
}

TEST_CASE("spm: of two overlapping pairs with equal scores the leftmost merges first") {
  // llama.cpp's llm_tokenizer_spm orders its queue by score, then by the left symbol's position (leftmost first);
  // ferry must split a word the same way or token ids differ from llama.cpp's for the same prompt. "ab" and "bc"
  // score the same: "abc" gives [a b][c], and "xbc" (no "xb" piece) still merges b c.
  VocabBuilder v;
  v.add("<unk>", 0, 2);
  v.add("a", -10);
  v.add("b", -10);
  const int32_t c = v.add("c", -10), x = v.add("x", -10);
  const int32_t ab = v.add("ab", -3.0f), bc = v.add("bc", -3.0f);
  const int32_t mark = v.add(kMark, -20);
  const Tokenizer t = Tokenizer::from_vocab(TokenizerKind::SPM, v.tokens, v.scores, v.types, {}, -1, -1);
  CHECK(t.encode("abc", false) == std::vector<int32_t>{mark, ab, c});
  CHECK(t.encode("xbc", false) == std::vector<int32_t>{mark, x, bc});
  // Two ties in a row: "abcabc" -> ab c ab c, every tie resolved to the left.
  CHECK(t.encode("abcabc", false) == std::vector<int32_t>{mark, ab, c, ab, c});
}
