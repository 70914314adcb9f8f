#include "ferry/text/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <new>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/utf8.hpp"

namespace ferry {
namespace {

// The published expressions, as the models' tokenizer.json files hold them (llama.cpp's llama-vocab.cpp lists them
// per pre-tokenizer type). Where llama.cpp rewrote (?i:...) for std::regex, the original is kept: PCRE2 has it.
// Non-ASCII characters are written as \x{...} so that no editor or normalizer can change a range's end (llama.cpp's
// copy of the DeepSeek class has three ends NFC-normalized into reversed ranges).

// GPT-2 (openai/gpt-2 encoder.py).
constexpr std::string_view kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// GPT-2's without its last alternative (llama.cpp's falcon and starcoder lists); the same words, since a space
// before a non-space is always taken by one of the " ?" alternatives.
constexpr std::string_view kGpt2Short = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3 (tiktoken's cl100k): numbers in groups of up to three digits, one non-letter may lead a word.
constexpr std::string_view kLlama3 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                                     R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: Llama 3's with every digit alone.
constexpr std::string_view kQwen2 = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
                                    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kDigit = R"(\p{N})";
constexpr std::string_view kDigits = R"(\p{N}+)";
constexpr std::string_view kThreeAsciiDigits = R"([0-9][0-9][0-9])";
// DeepSeek LLM: cased letters of the scripts that have case, ASCII / full-width / CJK punctuation, CJK and Hangul.
constexpr std::string_view kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293}\x{295}-\x{2AF})"
    R"(\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5})"
    R"(\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD})"
    R"(\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15})"
    R"(\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D})"
    R"(\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB})"
    R"(\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D})"
    R"(\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E})"
    R"(\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D})"
    R"(\x{A680}-\x{A69B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06})"
    R"(\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3}\x{104D8}-\x{104FB})"
    R"(\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
constexpr std::string_view kDeepseekPunctuation =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr std::string_view kDeepseekCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
constexpr std::string_view kDeepseek3Kana = R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
constexpr std::string_view kDeepseek3Words =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
    R"(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// BLOOM and its descendants: words end at whitespace and at sentence punctuation of several scripts.
constexpr std::string_view kBloom = R"( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{0964}\x{06D4}\x{060C})]+)";

struct Family {
  std::string_view name;
  std::vector<std::string_view> patterns;
  bool ignore_merges = false;
};

struct Alias {
  std::string_view name;
  const Family* family;
};

// llama.cpp's default: what a file without tokenizer.ggml.pre gets.
const Family& default_family() {
  static const Family family{"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Short, kDigits, kThreeAsciiDigits}};
  return family;
}

const std::vector<Alias>& aliases() {
  static const Family llama3{"llama3", {kLlama3}, true};
  // The same expression, merged as usual: llama.cpp looks whole words up only for the Llama 3 names.
  static const Family llama3_merging{"dbrx", {kLlama3}};
  static const Family gpt2{"gpt2", {kGpt2}};
  static const Family smollm{"smollm", {kDigit, kGpt2Short}};
  static const Family qwen2{"qwen2", {kQwen2}};
  static const Family deepseek_llm{
      "deepseek-llm", {"[\r\n]", kDeepseekLetters, kDeepseekPunctuation, R"(\s+$)", kDeepseekCjk, kDigits}};
  static const Family deepseek_coder{"deepseek-coder",
                                     {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kDeepseekCjk, kDigit}};
  static const Family deepseek3{"deepseek-v3", {R"(\p{N}{1,3})", kDeepseek3Kana, kDeepseek3Words}};
  static const Family falcon{"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2Short, kThreeAsciiDigits}};
  static const Family bloom{"bloom", {kBloom}};
  static const Family viking{"viking", {kBloom, kDigit}};
  static const std::vector<Alias> table = {
      {"default", &default_family()},
      {"llama3", &llama3},
      {"llama-v3", &llama3},
      {"llama-bpe", &llama3},
      {"falcon3", &llama3},
      {"dbrx", &llama3_merging},
      {"smaug-bpe", &llama3_merging},
      {"chatglm-bpe", &llama3_merging},
      {"gpt2", &gpt2},
      {"gpt-2", &gpt2},
      {"phi-2", &gpt2},
      {"mpt", &gpt2},
      {"olmo", &gpt2},
      {"jais", &gpt2},
      {"roberta-bpe", &gpt2},
      {"smollm", &smollm},
      {"starcoder", &smollm},
      {"refact", &smollm},
      {"command-r", &smollm},
      {"codeshell", &smollm},
      {"exaone", &smollm},
      {"minerva-7b", &smollm},
      {"qwen2", &qwen2},
      {"stablelm2", &qwen2},
      {"megrez", &qwen2},
      {"deepseek-llm", &deepseek_llm},
      {"deepseek-coder", &deepseek_coder},
      {"deepseek-v3", &deepseek3},
      {"falcon", &falcon},
      {"poro-chat", &bloom},
      {"bloom", &bloom},
      {"gpt3-finnish", &bloom},
      {"viking", &viking},
  };
  return table;
}

size_t utf8_char_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  return 4;  // only called on well-formed text, where anything else leads four bytes
}

struct CodeDeleter {
  void operator()(pcre2_code* code) const noexcept { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const noexcept { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// A piece of text on its way through the expressions; `opaque` pieces are ill-formed UTF-8 bytes, which no
// expression may see (PCRE2 is told the subject is valid, to avoid re-checking it on every match).
struct Piece {
  std::string_view text;
  bool opaque;
};

}  // namespace

namespace detail {

class RegexList {
 public:
  void add(const std::string& pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail(ErrorCategory::INVALID_ARGUMENT, "pre-tokenizer: the regular expression " + quote_name(pattern) +
                                                " does not compile at offset " + std::to_string(offset) + ": " +
                                                reinterpret_cast<const char*>(message));
    }
    m_codes.emplace_back(code);
    // JIT is an optimisation only: where it is unavailable the interpreter matches the same way.
    (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  }

  // Cuts every piece that is not opaque into the matches of expression `index` and the text between them.
  void apply(size_t index, const std::vector<Piece>& in, std::vector<Piece>& out) const {
    const pcre2_code* code = m_codes[index].get();
    MatchData data(pcre2_match_data_create_from_pattern(code, nullptr));
    if (!data) throw std::bad_alloc();
    for (const Piece& piece : in) {
      if (piece.opaque) {
        out.push_back(piece);
        continue;
      }
      const std::string_view text = piece.text;
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
      size_t gap = 0, at = 0;
      while (at < text.size()) {
        const int rc = match(code, subject, text.size(), at, data.get());
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) give_up(rc, text.size());
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
        const size_t start = ov[0], end = ov[1];
        if (end == start) {  // an empty match cuts nothing: step over one character
          at = start + utf8_char_length(static_cast<unsigned char>(text[start]));
          continue;
        }
        if (start > gap) out.push_back({text.substr(gap, start - gap), false});
        out.push_back({text.substr(start, end - start), false});
        gap = at = end;
      }
      if (gap < text.size()) out.push_back({text.substr(gap), false});
    }
  }

  size_t size() const noexcept { return m_codes.size(); }

 private:
  static int match(const pcre2_code* code, PCRE2_SPTR subject, size_t length, size_t start, pcre2_match_data* data) {
    int rc = pcre2_match(code, subject, length, start, PCRE2_NO_UTF_CHECK, data, nullptr);
    // The JIT's stack is small and fixed; the interpreter keeps its backtracking on the heap.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code, subject, length, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
    return rc;
  }

  [[noreturn]] static void give_up(int rc, size_t length) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(rc, message, sizeof message);
    fail(ErrorCategory::UNSUPPORTED, "pre-tokenizer: PCRE2 gave up on a piece of " + std::to_string(length) +
                                         " bytes: " + reinterpret_cast<const char*>(message));
  }

  std::vector<std::unique_ptr<pcre2_code, CodeDeleter>> m_codes;
};

}  // namespace detail

PreTokenizer PreTokenizer::from_patterns(std::string name, const std::vector<std::string>& patterns,
                                         bool ignore_merges) {
  auto regexes = std::make_shared<detail::RegexList>();
  for (const std::string& p : patterns) regexes->add(p);
  PreTokenizer pre;
  pre.m_name = std::move(name);
  pre.m_ignore_merges = ignore_merges;
  pre.m_regexes = std::move(regexes);
  return pre;
}

PreTokenizer PreTokenizer::for_name(std::string_view name) {
  // Compiled once per family: a tokenizer per model load must not pay for (or leak) a compilation each time.
  struct Compiled {
    const Family* family;
    PreTokenizer pre;
  };
  static const std::vector<Compiled> compiled = [] {
    std::vector<Compiled> all;
    for (const Alias& a : aliases()) {
      bool seen = false;
      for (const Compiled& c : all) seen = seen || c.family == a.family;
      if (seen) continue;
      std::vector<std::string> patterns(a.family->patterns.begin(), a.family->patterns.end());
      all.push_back({a.family, from_patterns(std::string(a.family->name), patterns, a.family->ignore_merges)});
    }
    return all;
  }();
  const Family* family = &default_family();
  std::string applied = "default";
  for (const Alias& a : aliases())
    if (a.name == name) {
      family = a.family;
      applied = std::string(name);
    }
  for (const Compiled& c : compiled)
    if (c.family == family) {
      PreTokenizer pre = c.pre;
      pre.m_name = applied;
      return pre;
    }
  fail(ErrorCategory::INTERNAL, "pre-tokenizer: family of " + quote_name(name) + " was not compiled");
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  // Well-formed runs and ill-formed bytes first (each of those a piece of its own).
  std::vector<Piece> pieces;
  for (size_t at = 0; at < text.size();) {
    const std::string_view rest = text.substr(at);
    const size_t bad = first_invalid_utf8(rest);
    if (bad == kValidUtf8) {
      pieces.push_back({rest, false});
      break;
    }
    if (bad > 0) pieces.push_back({rest.substr(0, bad), false});
    pieces.push_back({rest.substr(bad, 1), true});
    at += bad + 1;
  }
  std::vector<Piece> next;
  for (size_t i = 0; m_regexes && i < m_regexes->size(); ++i) {
    next.clear();
    m_regexes->apply(i, pieces, next);
    pieces.swap(next);
  }
  std::vector<std::string_view> words;
  words.reserve(pieces.size());
  for (const Piece& p : pieces) words.push_back(p.text);
  return words;
}

std::span<const std::string_view> known_pre_tokenizers() noexcept {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> all;
    for (const Alias& a : aliases()) all.push_back(a.name);
    return all;
  }();
  return names;
}

}  // namespace ferry
