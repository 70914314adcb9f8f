// The vocabulary of synthetic llama models (declared in ferry/model_maker.hpp). It must be a vocabulary a
// SentencePiece-style tokenizer can really use: every byte is reachable through the byte tokens, every printable
// ASCII character is a piece, and each word piece's prefixes are pieces too, so the pairwise merges that build it
// exist. Generated text from a synthetic model then decodes to readable (if meaningless) English.
#include <cstdio>
#include <string>
#include <string_view>
#include <unordered_set>

#include "ferry/error.hpp"
#include "ferry/models/model_maker.hpp"

namespace ferry {
namespace {

// U+2581 LOWER ONE EIGHTH BLOCK: SentencePiece's marker for a preceding space.
constexpr std::string_view kSpace = "\xE2\x96\x81";

// Common English words, most frequent first; each becomes "▁word".
constexpr std::string_view kWords[] = {
    "the",     "of",     "and",    "to",    "a",      "in",     "is",      "it",     "you",    "that",     "he",
    "was",     "for",    "on",     "are",   "with",   "as",     "I",       "his",    "they",   "be",       "at",
    "one",     "have",   "this",   "from",  "or",     "had",    "by",      "not",    "word",   "but",      "what",
    "some",    "we",     "can",    "out",   "other",  "were",   "all",     "there",  "when",   "up",       "use",
    "your",    "how",    "said",   "an",    "each",   "she",    "which",   "do",     "their",  "time",     "if",
    "will",    "way",    "about",  "many",  "then",   "them",   "write",   "would",  "like",   "so",       "these",
    "her",     "long",   "make",   "thing", "see",    "him",    "two",     "has",    "look",   "more",     "day",
    "could",   "go",     "come",   "did",   "number", "sound",  "no",      "most",   "people", "my",       "over",
    "know",    "water",  "than",   "call",  "first",  "who",    "may",     "down",   "side",   "been",     "now",
    "find",    "any",    "new",    "work",  "part",   "take",   "get",     "place",  "made",   "live",     "where",
    "after",   "back",   "little", "only",  "round",  "man",    "year",    "came",   "show",   "every",    "good",
    "me",      "give",   "our",    "under", "name",   "very",   "through", "just",   "form",   "sentence", "great",
    "think",   "say",    "help",   "low",   "line",   "differ", "turn",    "cause",  "much",   "mean",     "before",
    "move",    "right",  "boy",    "old",   "too",    "same",   "tell",    "does",   "set",    "three",    "want",
    "air",     "well",   "also",   "play",  "small",  "end",    "put",     "home",   "read",   "hand",     "port",
    "large",   "spell",  "add",    "even",  "land",   "here",   "must",    "big",    "high",   "such",     "follow",
    "act",     "why",    "ask",    "men",   "change", "went",   "light",   "kind",   "off",    "need",     "house",
    "picture", "try",    "us",     "again", "animal", "point",  "mother",  "world",  "near",   "build",    "self",
    "earth",   "father", "The",    "It",    "In",     "This",   "model",   "memory", "layer"};

// Frequent word endings and inner pieces (no space marker): they let unknown words split into a few pieces.
constexpr std::string_view kSubwords[] = {"ing", "ed",  "er",  "es",  "ly",  "tion", "ment", "ness", "able", "al",
                                          "en",  "est", "ful", "ity", "ive", "less", "ous",  "s",    "th",   "he",
                                          "an",  "re",  "on",  "at",  "or",  "nd",   "st",   "ar",   "te",   "ou",
                                          "it",  "is",  "ng",  "ea",  "ti",  "se",   "le",   "ve",   "co",   "de"};

// Printable single characters: the last resort before byte fallback.
constexpr std::string_view kChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()-[]{}/\\@#$%&*+=<>_|~`^";

class VocabBuilder {
 public:
  explicit VocabBuilder(int64_t n_vocab) : m_n_vocab(n_vocab) {
    m_vocab.tokens.reserve(static_cast<size_t>(n_vocab));
    m_vocab.scores.reserve(static_cast<size_t>(n_vocab));
    m_vocab.token_types.reserve(static_cast<size_t>(n_vocab));
    m_seen.reserve(static_cast<size_t>(n_vocab));
  }
  bool full() const noexcept { return static_cast<int64_t>(m_vocab.tokens.size()) >= m_n_vocab; }
  // Adds a token unless it is already present or the vocabulary is full. Pieces get the score -(piece index), so
  // earlier (shorter, more frequent) pieces win merges as in a trained SentencePiece model; others score 0.
  void add(std::string token, int32_t type) {
    if (full() || !m_seen.insert(token).second) return;
    const int64_t id = static_cast<int64_t>(m_vocab.tokens.size());
    const float score =
        type == SyntheticVocab::kNormal ? -static_cast<float>(id - SyntheticVocab::kFirstPieceId) : 0.0f;
    m_vocab.tokens.push_back(std::move(token));
    m_vocab.scores.push_back(score);
    m_vocab.token_types.push_back(type);
  }
  // The word and every prefix of it (prefixes first: a piece is reachable only through pieces that exist).
  void add_with_prefixes(std::string_view marker, std::string_view word) {
    for (size_t len = 1; len <= word.size(); ++len) {
      std::string piece(marker);
      piece += word.substr(0, len);
      add(std::move(piece), SyntheticVocab::kNormal);
    }
  }
  bool contains(const std::string& token) const { return m_seen.count(token) != 0; }
  SyntheticVocab take() { return std::move(m_vocab); }

 private:
  int64_t m_n_vocab;
  SyntheticVocab m_vocab;
  std::unordered_set<std::string> m_seen;
};

}  // namespace

SyntheticVocab make_llama_vocab(int64_t n_vocab) {
  if (n_vocab < SyntheticVocab::kFirstPieceId)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "synthetic vocabulary: n_vocab " + std::to_string(n_vocab) + " is below the minimum of " +
             std::to_string(SyntheticVocab::kFirstPieceId) + " (3 special tokens and 256 byte tokens)");
  VocabBuilder b(n_vocab);
  b.add("<unk>", SyntheticVocab::kUnknown);
  b.add("<s>", SyntheticVocab::kControl);
  b.add("</s>", SyntheticVocab::kControl);
  for (int byte = 0; byte < 256; ++byte) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", byte);
    b.add(name, SyntheticVocab::kByte);
  }
  b.add(std::string(kSpace), SyntheticVocab::kNormal);
  for (char c : kChars) b.add(std::string(1, c), SyntheticVocab::kNormal);
  for (std::string_view w : kWords) b.add_with_prefixes(kSpace, w);
  for (std::string_view w : kSubwords) b.add_with_prefixes({}, w);
  // Filler for large vocabularies (llama-3-8b has 128256): unique by construction, checked anyway in case a word
  // above ever spells the same string.
  for (int64_t k = SyntheticVocab::kFirstPieceId; !b.full(); ++k) {
    std::string piece(kSpace);
    piece += "tok" + std::to_string(k);
    if (!b.contains(piece)) b.add(std::move(piece), SyntheticVocab::kNormal);
  }
  return b.take();
}

}  // namespace ferry
