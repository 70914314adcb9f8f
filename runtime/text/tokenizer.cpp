#include "ferry/text/tokenizer.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <queue>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"

namespace ferry {
namespace {

// A byte token's piece, exactly "<0xHH>" with two hex digits (sscanf's %X would also take a sign or one digit).
std::optional<uint8_t> parse_byte_piece(std::string_view piece) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  const int hi = digit(piece[3]), lo = digit(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(16 * hi + lo);
}

std::string hex_byte(unsigned char b) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", b);
  return text;
}

constexpr int32_t kTypeUnknown = 2;
constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;
constexpr int32_t kTypeByte = 6;
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word marker

size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // stray continuation byte: treat alone (it will fall back to its byte token)
}

// A piece of text as a doubly linked list of UTF-8 characters, which the SentencePiece and BPE merges join pairwise.
struct Symbol {
  size_t start, len;  // bytes of the text; len 0 once merged into its left neighbour
  int prev, next;     // -1 at the ends
};

std::vector<Symbol> utf8_symbols(std::string_view text) {
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < text.size();) {
    const size_t len = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
    symbols.push_back({i, len, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1});
    i += len;
  }
  if (!symbols.empty()) symbols.back().next = -1;
  return symbols;
}

// Joins symbol `left` with its right neighbour.
void merge_with_next(std::vector<Symbol>& symbols, int left) {
  Symbol& l = symbols[left];
  Symbol& r = symbols[l.next];
  l.len += r.len;
  r.len = 0;
  l.next = r.next;
  if (r.next >= 0) symbols[r.next].prev = left;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// GPT-2's reversible map from bytes to printable code points: printable Latin-1 bytes map to themselves, the rest
// to 256, 257, ... in byte order.
struct ByteUnicodeMap {
  std::string encoded[256];
  std::unordered_map<std::string, uint8_t> decoded;
  ByteUnicodeMap() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      append_utf8(encoded[b], printable ? b : next++);
      decoded[encoded[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteUnicodeMap& byte_unicode_map() {
  static const ByteUnicodeMap map;
  return map;
}

// llama.cpp asks for a BOS token with these BPE pre-tokenizers when the file does not say (Llama 3's tokenizer
// config adds <|begin_of_text|>); SentencePiece vocabularies always get one.
// Byte-level BPE vocabularies start prompts with BOS only under the pre-tokenizers llama.cpp gives add_bos (the
// Llama-3 group and a few others), judged by the name the file asks for, whether or not ferry implements it.
bool bpe_adds_bos(std::string_view pre) {
  constexpr std::string_view kAddingBos[] = {"llama3", "llama-v3", "llama-bpe",  "falcon3", "falcon-h1",   "pixtral",
                                             "midm-2.0", "lfm2", "jina-v5-nano", "tekken",  "chameleon"};
  for (std::string_view p : kAddingBos)
    if (pre == p) return true;
  return false;
}

}  // namespace

Tokenizer Tokenizer::from_vocab(TokenizerKind kind, std::vector<std::string> tokens, std::vector<float> scores,
                                std::vector<int32_t> types, std::vector<std::string> merges, int32_t bos, int32_t eos,
                                const TokenizerOptions& options) {
  Tokenizer t;
  t.m_kind = kind;
  t.m_tokens = std::move(tokens);
  t.m_scores = std::move(scores);
  t.m_types = std::move(types);
  const auto n = static_cast<int64_t>(t.m_tokens.size());
  if (n == 0) fail(ErrorCategory::FORMAT, "tokenizer: the vocabulary is empty");
  if (t.m_scores.empty()) t.m_scores.assign(t.m_tokens.size(), 0.0f);
  if (t.m_types.empty()) t.m_types.assign(t.m_tokens.size(), 1);
  if (t.m_scores.size() != t.m_tokens.size() || t.m_types.size() != t.m_tokens.size())
    fail(ErrorCategory::FORMAT, "tokenizer: " + std::to_string(n) + " tokens but " + std::to_string(t.m_scores.size()) +
                                    " scores and " + std::to_string(t.m_types.size()) + " token types");
  for (int32_t id : {bos, eos})
    if (id < -1 || id >= n)
      fail(ErrorCategory::FORMAT,
           "tokenizer: special token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(n));
  t.m_bos = bos;
  t.m_eos = eos;
  for (size_t r = 0; r < merges.size(); ++r) t.m_merge_rank.emplace(std::move(merges[r]), static_cast<int32_t>(r));
  t.m_add_space_prefix = options.add_space_prefix;
  t.m_pre = PreTokenizer::for_name(options.pre);
  t.m_pre_requested = options.pre;
  t.m_add_bos_default = options.add_bos.value_or(kind == TokenizerKind::SPM || bpe_adds_bos(options.pre));
  t.index_vocabulary();
  return t;
}

Tokenizer Tokenizer::from_gguf(const GgufFile& file) {
  const std::string model = file.get_string("tokenizer.ggml.model");
  TokenizerKind kind;
  if (model == "llama")
    kind = TokenizerKind::SPM;
  else if (model == "gpt2")
    kind = TokenizerKind::BPE;
  else
    fail(ErrorCategory::UNSUPPORTED,
         file.name() + ": tokenizer.ggml.model '" + model + "' is not supported (ferry reads 'llama' and 'gpt2')");
  std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  std::vector<float> scores;
  if (file.find("tokenizer.ggml.scores")) scores = file.get_array<float>("tokenizer.ggml.scores");
  std::vector<int32_t> types;
  if (file.find("tokenizer.ggml.token_type")) types = file.get_array<int32_t>("tokenizer.ggml.token_type");
  std::vector<std::string> merges;
  if (kind == TokenizerKind::BPE) merges = file.get_string_array("tokenizer.ggml.merges");
  const auto bos = file.get_optional<int32_t>("tokenizer.ggml.bos_token_id").value_or(-1);
  const auto eos = file.get_optional<int32_t>("tokenizer.ggml.eos_token_id").value_or(-1);
  TokenizerOptions options;
  if (kind == TokenizerKind::BPE && file.find("tokenizer.ggml.pre"))
    options.pre = file.get_string("tokenizer.ggml.pre");
  options.add_space_prefix = file.get_optional<bool>("tokenizer.ggml.add_space_prefix").value_or(true);
  options.add_bos = file.get_optional<bool>("tokenizer.ggml.add_bos_token");
  try {
    return from_vocab(kind, std::move(tokens), std::move(scores), std::move(types), std::move(merges), bos, eos,
                      options);
  } catch (const Error& e) {
    fail(e.category(), file.name() + ": " + e.what());
  }
}

void Tokenizer::index_vocabulary() {
  std::fill(std::begin(m_byte_tokens), std::end(m_byte_tokens), -1);
  m_piece_to_id.reserve(m_tokens.size());
  std::vector<SpecialTokenMatcher::Token> special;
  for (size_t id = 0; id < m_tokens.size(); ++id) {
    const std::string& piece = m_tokens[id];
    const int32_t type = m_types[id];
    m_piece_to_id.emplace(piece, static_cast<int32_t>(id));  // the first of duplicate pieces wins
    if (type == kTypeUnknown && m_unk < 0) m_unk = static_cast<int32_t>(id);
    if (type == kTypeControl || type == kTypeUnknown || type == kTypeUserDefined)
      special.push_back({piece, static_cast<int32_t>(id), type == kTypeUserDefined});
    if (type != kTypeByte) continue;
    if (const std::optional<uint8_t> value = parse_byte_piece(piece)) m_byte_tokens[*value] = static_cast<int32_t>(id);
  }
  m_special = SpecialTokenMatcher(std::move(special));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && m_bos >= 0) out.push_back(m_bos);
  if (text.empty()) return out;
  for (const SpecialTokenMatcher::Fragment& f : m_special.partition(text, parse_special)) {
    if (f.id >= 0)
      out.push_back(f.id);
    else if (m_kind == TokenizerKind::SPM)
      encode_spm(f.text, out);  // every run of text gets the word marker, as after BOS (llama.cpp, Hugging Face)
    else
      encode_bpe(f.text, out);
  }
  return out;
}

void Tokenizer::encode_spm(std::string_view text, std::vector<int32_t>& out) const {
  std::string normalized(m_add_space_prefix ? kSpace : std::string_view());
  for (char c : text) {
    if (c == ' ')
      normalized += kSpace;
    else
      normalized += c;
  }
  std::vector<Symbol> symbols = utf8_symbols(normalized);  // never empty: text is not

  struct Bigram {
    float score;
    int left, right;
    size_t size;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::priority_queue<Bigram> queue;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].len + symbols[right].len;
    auto it = m_piece_to_id.find(normalized.substr(symbols[left].start, size));
    if (it == m_piece_to_id.end()) return;
    queue.push({m_scores[it->second], left, right, size});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    const Bigram top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.len == 0 || right.len == 0 || left.len + right.len != top.size) continue;  // stale
    merge_with_next(symbols, top.left);  // right is left's next: neither changed since the pair was pushed
    try_pair(left.prev, top.left);
    try_pair(top.left, left.next);
  }
  for (int i = 0; i >= 0 && i < static_cast<int>(symbols.size()); i = symbols[i].next) {
    const Symbol& s = symbols[i];
    auto it = m_piece_to_id.find(normalized.substr(s.start, s.len));
    if (it != m_piece_to_id.end()) {
      out.push_back(it->second);
      continue;
    }
    for (size_t b = 0; b < s.len; ++b) {  // byte fallback
      const int32_t id = m_byte_tokens[static_cast<unsigned char>(normalized[s.start + b])];
      if (id >= 0)
        out.push_back(id);
      else if (m_unk >= 0)
        out.push_back(m_unk);
      else
        fail(ErrorCategory::UNSUPPORTED, "tokenizer: byte " +
                                             hex_byte(static_cast<unsigned char>(normalized[s.start + b])) +
                                             " has no token and the vocabulary has no byte or unknown tokens");
    }
  }
}

void Tokenizer::encode_bpe(std::string_view text, std::vector<int32_t>& out) const {
  const ByteUnicodeMap& map = byte_unicode_map();
  std::string mapped;
  for (std::string_view word : m_pre.split(text)) {
    mapped.clear();
    for (unsigned char c : word) mapped += map.encoded[c];
    if (m_pre.ignore_merges())
      if (auto it = m_piece_to_id.find(mapped); it != m_piece_to_id.end()) {
        out.push_back(it->second);
        continue;
      }
    bpe_word(mapped, out);
  }
}

void Tokenizer::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  // Repeatedly merge the adjacent pair of lowest merge rank (the leftmost of equal ranks), as GPT-2's BPE does, with a
  // heap of candidate pairs over a linked list of symbols: O(n log n) per word, so a long unbroken word (base64, a
  // hash) cannot stall the tokenizer. A popped pair whose symbols changed since it was pushed is stale and skipped.
  std::vector<Symbol> symbols = utf8_symbols(word);
  if (symbols.empty()) return;
  struct Pair {
    int32_t rank;
    int left, right;
    size_t left_len, right_len;
    bool operator<(const Pair& o) const { return rank > o.rank || (rank == o.rank && left > o.left); }
  };
  std::priority_queue<Pair> queue;
  std::string key;
  auto try_pair = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol &l = symbols[left], &r = symbols[right];
    key.assign(word, l.start, l.len).append(" ").append(word, r.start, r.len);
    auto it = m_merge_rank.find(key);
    if (it != m_merge_rank.end()) queue.push({it->second, left, right, l.len, r.len});
  };
  for (size_t i = 1; i < symbols.size(); ++i) try_pair(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    const Pair top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    if (left.len != top.left_len || right.len != top.right_len || left.next != top.right) continue;  // stale
    merge_with_next(symbols, top.left);
    try_pair(left.prev, top.left);
    try_pair(top.left, left.next);
  }
  for (int i = 0; i >= 0; i = symbols[i].next)
    push_piece_or_unknown(word.substr(symbols[i].start, symbols[i].len), out);
}

void Tokenizer::push_piece_or_unknown(const std::string& piece, std::vector<int32_t>& out) const {
  if (auto it = m_piece_to_id.find(piece); it != m_piece_to_id.end())
    out.push_back(it->second);
  else if (m_unk >= 0)
    out.push_back(m_unk);
  else
    fail(ErrorCategory::UNSUPPORTED,
         "tokenizer: piece " + quote_name(piece) + " is not in the vocabulary and it has no unknown token");
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (id < 0 || static_cast<size_t>(id) >= m_tokens.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "tokenizer: token id " + std::to_string(id) +
                                              " is outside the vocabulary of " + std::to_string(m_tokens.size()));
  const std::string& piece = m_tokens[id];
  const int32_t type = m_types[id];
  if (type == kTypeControl || type == kTypeUnknown) return special ? piece : std::string();
  if (type == kTypeUserDefined) return piece;  // added as plain text: no byte alphabet, no word marker
  if (m_kind == TokenizerKind::SPM) {
    if (m_types[id] == kTypeByte)
      if (const std::optional<uint8_t> value = parse_byte_piece(piece))
        return std::string(1, static_cast<char>(*value));
    std::string text;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpace.size(), kSpace) == 0) {
        text += ' ';
        i += kSpace.size();
      } else {
        text += piece[i++];
      }
    }
    return text;
  }
  const ByteUnicodeMap& map = byte_unicode_map();
  std::string bytes;
  for (size_t i = 0; i < piece.size();) {
    const size_t len = utf8_length(static_cast<unsigned char>(piece[i]));
    auto it = map.decoded.find(piece.substr(i, len));
    if (it != map.decoded.end())
      bytes += static_cast<char>(it->second);
    else
      bytes += piece.substr(i, len);  // added tokens stored as plain text
    i += len;
  }
  return bytes;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) text += token_to_piece(id);
  // SentencePiece adds a dummy space before the first word (unless add_space_prefix is off); it is not the text's.
  if (m_kind == TokenizerKind::SPM && m_add_space_prefix && !text.empty() && text[0] == ' ') text.erase(0, 1);
  return text;
}

}  // namespace ferry
