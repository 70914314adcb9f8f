// The BPE pre-tokenizers on hand-derived splits: each family's published expression cuts text the way its rules say
// (tests/interop/check_tokenizers.py compares whole encodings with Hugging Face's `tokenizers`), Unicode classes
// rather than ASCII approximations, names and fallbacks, and robustness: any bytes, any length, the pieces always
// put back together into the text.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/pre_tokenizer.hpp"
#include "support/seed.hpp"

using ferry::PreTokenizer;

namespace {

std::vector<std::string> words(const char* name, std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view w : PreTokenizer::for_name(name).split(text)) out.emplace_back(w);
  return out;
}

using Words = std::vector<std::string>;

}  // namespace

TEST_CASE("pre-tokenizer gpt2: contractions, words with their space, digits and punctuation runs") {
  CHECK(words("gpt2", "Hello world's 123 don't!?") == Words{"Hello", " world", "'s", " 123", " don", "'t", "!?"});
  // Runs of spaces: all but the last stand alone, the last joins the next word; at the end they stay together.
  CHECK(words("gpt2", "a   b  ") == Words{"a", "  ", " b", "  "});
  CHECK(words("gpt2", "x\n\ny") == Words{"x", "\n", "\n", "y"});
  // Contractions are lower case only in GPT-2's expression.
  CHECK(words("gpt2", "DON'T") == Words{"DON", "'", "T"});
}

TEST_CASE("pre-tokenizer: letters, numbers and spaces are Unicode's, not ASCII's") {
  // Accented, Greek, CJK letters are \p{L}; inverted punctuation is not a letter; a non-breaking space is \s.
  CHECK(words("gpt2", "héllo wörld 日本語") == Words{"héllo", " wörld", " 日本語"});
  CHECK(words("gpt2", "¿qué?") == Words{"¿", "qué", "?"});
  CHECK(words("gpt2",
              "a\xC2\xA0"
              "b") == Words{"a", "\xC2\xA0", "b"});
  // ... so it does not join the punctuation after it, as a symbol would.
  CHECK(words("gpt2", "a\xC2\xA0!") == Words{"a", "\xC2\xA0", "!"});
  CHECK(words("llama-bpe", "x\xE3\x80\x80\xE3\x80\x80(y") == Words{"x", "\xE3\x80\x80", "\xE3\x80\x80", "(y"});
  // Arabic-Indic digits and superscripts are \p{N}: smollm puts every one alone.
  CHECK(words("smollm", "x\xD9\xA3\xD9\xA4\xC2\xB2") == Words{"x", "\xD9\xA3", "\xD9\xA4", "\xC2\xB2"});
}

TEST_CASE("pre-tokenizer llama3: digits in threes, one leading non-letter, case-insensitive contractions") {
  CHECK(words("llama-bpe", "12345678") == Words{"123", "456", "78"});
  CHECK(words("llama-bpe", "DON'T we'LL") == Words{"DON", "'T", " we", "'LL"});
  CHECK(words("llama-bpe", "(hello) $x") == Words{"(hello", ")", " $", "x"});
  CHECK(words("llama-bpe", "a\n\n  b") == Words{"a", "\n\n", " ", " b"});
  CHECK(PreTokenizer::for_name("llama-bpe").ignore_merges());
  CHECK(PreTokenizer::for_name("llama3").ignore_merges());
  CHECK_FALSE(PreTokenizer::for_name("qwen2").ignore_merges());
  CHECK_FALSE(PreTokenizer::for_name("gpt2").ignore_merges());
}

TEST_CASE("pre-tokenizer qwen2 and smollm: every digit alone") {
  CHECK(words("qwen2", "abc12345") == Words{"abc", "1", "2", "3", "4", "5"});
  CHECK(words("smollm", "abc 12345") == Words{"abc", " ", "1", "2", "3", "4", "5"});
  CHECK(words("smollm", "I'm 2") == Words{"I", "'m", " ", "2"});
}

TEST_CASE("pre-tokenizer default and deepseek-llm: expressions applied in order, gaps kept") {
  // llama.cpp's default isolates punctuation first, so "'s" is no contraction there; digit runs go by threes.
  CHECK(words("default", "it's 12345") == Words{"it", "'", "s", " ", "123", "45"});
  // DeepSeek: newlines alone, letters of cased scripts with one leading space, CJK runs.
  CHECK(words("deepseek-llm", "Hi there\n中文abc") == Words{"Hi", " there", "\n", "中文", "abc"});
}

TEST_CASE("pre-tokenizer names: aliases kept, unknown or absent fall back to default") {
  CHECK(PreTokenizer::for_name("llama-bpe").name() == "llama-bpe");
  CHECK(PreTokenizer::for_name("gpt-2").name() == "gpt-2");
  CHECK(PreTokenizer::for_name("").name() == "default");
  CHECK(PreTokenizer::for_name("no-such-pre").name() == "default");
  CHECK(words("no-such-pre", "it's 12345") == words("default", "it's 12345"));
  CHECK(words("gpt-2", "it's 12345") == words("gpt2", "it's 12345"));
  for (std::string_view name : ferry::known_pre_tokenizers()) {
    CAPTURE(name);
    CHECK(PreTokenizer::for_name(name).name() == name);
  }
}

TEST_CASE("pre-tokenizer: ill-formed UTF-8 bytes are pieces of their own, never given to the expressions") {
  CHECK(words("gpt2",
              "ab\xFF"
              "cd") == Words{"ab", "\xFF", "cd"});
  CHECK(words("llama-bpe",
              "\xE2\x82"
              "x") == Words{"\xE2", "\x82", "x"});
  CHECK(words("qwen2", "\xED\xA0\x80") == Words{"\xED", "\xA0", "\x80"});  // a surrogate
}

TEST_CASE("pre-tokenizer: any bytes split into non-empty pieces that put back together into the text") {
  std::mt19937 rng(static_cast<uint32_t>(ferry::test::test_seed(501)));
  const std::vector<std::string> alphabet = {
      "a", "Z", "7",  " ", "  ",       "\n",           "\r\n", "\t",       "'s",       "'LL",  "!",
      "<", "é", "日", "😀", "\xC2\xA0", "\xE3\x80\x80", "\xFF", "\xE2\x82", "\xC0\xAF", "\x00", "\xF4\x90\x80\x80"};
  for (std::string_view name : ferry::known_pre_tokenizers()) {
    CAPTURE(name);
    const PreTokenizer pre = PreTokenizer::for_name(name);
    for (int i = 0; i < 50; ++i) {
      std::string text;
      const int n = static_cast<int>(rng() % 60);
      for (int k = 0; k < n; ++k) text += alphabet[rng() % alphabet.size()];
      std::string joined;
      bool none_empty = true;
      for (std::string_view w : pre.split(text)) {
        none_empty = none_empty && !w.empty();
        joined += w;
      }
      CHECK(none_empty);
      CHECK(joined == text);
    }
  }
}

TEST_CASE("pre-tokenizer: a megabyte of whitespace or digits is split without a stall or a PCRE2 limit") {
  const std::string spaces = std::string(1 << 20, ' ') + "x";
  for (const char* name : {"gpt2", "llama-bpe", "qwen2", "deepseek-llm", "default"}) {
    CAPTURE(name);
    std::string joined;
    for (std::string_view w : PreTokenizer::for_name(name).split(spaces)) joined += w;
    CHECK(joined == spaces);
  }
  const std::vector<std::string_view> digits = PreTokenizer::for_name("llama-bpe").split(std::string(300000, '9'));
  CHECK(digits.size() == 100000);
}

TEST_CASE("pre-tokenizer: an expression PCRE2 rejects is named") {
  try {
    PreTokenizer::from_patterns("broken", {"\\p{L}+", "[unclosed"});
    FAIL("no error");
  } catch (const ferry::Error& e) {
    CHECK(e.category() == ferry::ErrorCategory::INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("[unclosed") != std::string::npos);
  }
}
