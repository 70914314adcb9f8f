// Tokenizer built from a GGUF file's vocabulary (tokenizer.ggml.*), encoding as llama.cpp and the models' own
// Hugging Face tokenizers do:
// - "llama": SentencePiece-style BPE over UTF-8 characters. Spaces become U+2581 ('▁'), a '▁' is prefixed
//   (tokenizer.ggml.add_space_prefix, default on), then the adjacent pair whose merge is a vocabulary piece with the
//   highest score is merged until none is left; characters that are not pieces fall back to their bytes (<0x41>).
// - "gpt2": byte-level BPE. Text is split into words by the pre-tokenizer that tokenizer.ggml.pre names
//   (pre_tokenizer.hpp), each word's bytes are mapped to printable characters, and merges apply in rank order
//   (tokenizer.ggml.merges).
// Before either, special tokens written in the text are cut out as single tokens (special_tokens.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ferry/text/pre_tokenizer.hpp"
#include "ferry/text/special_tokens.hpp"

namespace ferry {

class GgufFile;

enum class TokenizerKind { SPM, BPE };

// What GGUF metadata says beyond the vocabulary; from_gguf reads it, from_vocab takes it.
struct TokenizerOptions {
  std::string pre;               // tokenizer.ggml.pre (BPE): empty when absent
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix (SPM)
  std::optional<bool> add_bos;   // tokenizer.ggml.add_bos_token; absent: see Tokenizer::add_bos_default()
};

class Tokenizer {
 public:
  // Throws FORMAT/NOT_FOUND/UNSUPPORTED naming the key when the vocabulary is missing or inconsistent.
  static Tokenizer from_gguf(const GgufFile& file);
  // For tests and synthetic models: an explicit vocabulary. `types` uses GGUF token types (1 normal, 2 unknown,
  // 3 control, 4 user-defined, 6 byte); `merges` only for BPE ("a b" per merge, highest priority first).
  static Tokenizer from_vocab(TokenizerKind kind, std::vector<std::string> tokens, std::vector<float> scores,
                              std::vector<int32_t> types, std::vector<std::string> merges, int32_t bos, int32_t eos,
                              const TokenizerOptions& options = {});

  TokenizerKind kind() const noexcept { return m_kind; }
  size_t vocab_size() const noexcept { return m_tokens.size(); }
  int32_t bos() const noexcept { return m_bos; }
  int32_t eos() const noexcept { return m_eos; }

  // Whether the model wants a BOS token at the start of its input: tokenizer.ggml.add_bos_token when the file has
  // it, else llama.cpp's default for the vocabulary (SentencePiece and Llama 3: yes, other BPE vocabularies: no).
  bool add_bos_default() const noexcept { return m_add_bos_default; }
  // The pre-tokenizer applied to BPE text (PreTokenizer::name(): "default" when tokenizer.ggml.pre is absent or
  // unknown), and the name the file asked for (empty when absent). They differ when ferry fell back: a caller may
  // tell the user, since the encodings may then differ from the model's own tokenizer.
  const std::string& pre_tokenizer_name() const noexcept { return m_pre.name(); }
  const std::string& pre_tokenizer_requested() const noexcept { return m_pre_requested; }

  // `add_bos`: put the BOS token first (when the vocabulary has one). `parse_special`: control and unknown tokens
  // written in the text (`<|im_start|>`) become their ids; off, they are encoded as the characters they are made
  // of. User-defined tokens are always matched. Text that is not valid UTF-8 is encoded byte by byte where it is
  // ill-formed (byte tokens or byte-level BPE), never refused.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const;
  // The bytes a token stands for, for streaming output. Control and unknown tokens give "" unless `special`, where
  // they give their text (`<|im_end|>`); user-defined tokens give their text as it is. A piece may end inside a
  // UTF-8 character that the next token completes (Utf8Stream joins them).
  std::string token_to_piece(int32_t id, bool special = false) const;
  std::string decode(std::span<const int32_t> ids) const;

 private:
  void index_vocabulary();
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& word, std::vector<int32_t>& out) const;
  void push_piece_or_unknown(const std::string& piece, std::vector<int32_t>& out) const;

  TokenizerKind m_kind = TokenizerKind::SPM;
  std::vector<std::string> m_tokens;
  std::vector<float> m_scores;
  std::vector<int32_t> m_types;
  std::unordered_map<std::string, int32_t> m_piece_to_id;
  std::unordered_map<std::string, int32_t> m_merge_rank;  // "left right" -> rank (BPE)
  int32_t m_byte_tokens[256];                             // SPM byte fallback: <0xXX> ids, -1 where absent
  int32_t m_bos = -1;
  int32_t m_eos = -1;
  int32_t m_unk = -1;
  bool m_add_space_prefix = true;
  bool m_add_bos_default = true;
  PreTokenizer m_pre;
  std::string m_pre_requested;
  SpecialTokenMatcher m_special;
};

}  // namespace ferry
