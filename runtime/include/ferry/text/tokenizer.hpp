// Tokenizer built from a GGUF file's vocabulary (tokenizer.ggml.*):
// - "llama": SentencePiece-style BPE over UTF-8 characters. Spaces become U+2581 ('▁'), a '▁' is prefixed, then the
//   adjacent pair whose merge is a vocabulary piece with the highest score is merged until none is left; characters
//   that are not pieces fall back to their bytes (<0x41> tokens).
// - "gpt2": byte-level BPE. Text is split into words (GPT-2's pre-tokenizer rules), each word's bytes are mapped to
//   printable characters, and merges apply in rank order (tokenizer.ggml.merges).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ferry {

class GgufFile;

enum class TokenizerKind { SPM, BPE };

class Tokenizer {
 public:
  // Throws FORMAT/NOT_FOUND/UNSUPPORTED naming the key when the vocabulary is missing or inconsistent.
  static Tokenizer from_gguf(const GgufFile& file);
  // For tests and synthetic models: an explicit vocabulary. `types` uses GGUF token types (1 normal, 2 unknown,
  // 3 control, 6 byte); `merges` only for BPE ("a b" per merge, highest priority first).
  static Tokenizer from_vocab(TokenizerKind kind, std::vector<std::string> tokens, std::vector<float> scores,
                              std::vector<int32_t> types, std::vector<std::string> merges, int32_t bos, int32_t eos);

  TokenizerKind kind() const noexcept { return m_kind; }
  size_t vocab_size() const noexcept { return m_tokens.size(); }
  int32_t bos() const noexcept { return m_bos; }
  int32_t eos() const noexcept { return m_eos; }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  // The bytes a token stands for (control tokens give ""), for streaming output.
  std::string token_to_piece(int32_t id) const;
  std::string decode(std::span<const int32_t> ids) const;

 private:
  void index_vocabulary();
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void bpe_word(const std::string& word, std::vector<int32_t>& out) const;

  TokenizerKind m_kind = TokenizerKind::SPM;
  std::vector<std::string> m_tokens;
  std::vector<float> m_scores;
  std::vector<int32_t> m_types;
  std::unordered_map<std::string, int32_t> m_piece_to_id;
  std::unordered_map<std::string, int32_t> m_merge_rank;  // "left right" -> rank (BPE)
  int32_t m_byte_tokens[256];                              // SPM byte fallback: <0xXX> ids, -1 where absent
  int32_t m_bos = -1;
  int32_t m_eos = -1;
  int32_t m_unk = -1;
};

}  // namespace ferry
