// Special tokens written in the text being encoded (`<|im_start|>`, `<s>`): found before the normal encoding and
// emitted as their own ids, so a chat template's markers become the single tokens the model was trained on instead
// of a dozen pieces of punctuation. Which tokens, from the vocabulary's token types (GGUF tokenizer.ggml.token_type),
// as llama.cpp's parse_special does: control (3) and unknown (2) tokens when the caller asks for them, user-defined
// tokens (4) always (they were added to the vocabulary to be found in text).
//
// Matching is leftmost-longest, as Hugging Face's `tokenizers` matches its added tokens: scanning from the start, the
// longest special token that begins at a position wins. (llama.cpp takes the tokens longest first over the whole
// text; the two differ only when special tokens overlap each other in the text, which real vocabularies avoid.)
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry {

class SpecialTokenMatcher {
 public:
  struct Token {
    std::string text;
    int32_t id;
    bool always;  // matched even when control tokens are not parsed (user-defined tokens)
  };
  // A run of the text: a special token's id, or plain text to encode (id -1).
  struct Fragment {
    std::string_view text;
    int32_t id;
  };

  SpecialTokenMatcher() = default;
  // Empty texts are ignored; of tokens with the same text the first wins.
  explicit SpecialTokenMatcher(std::vector<Token> tokens);

  bool empty() const noexcept { return m_tokens.empty(); }
  // `text` cut into special tokens and the plain text between them, in order (no empty plain fragments).
  std::vector<Fragment> partition(std::string_view text, bool parse_control) const;

 private:
  std::vector<Token> m_tokens;
  std::array<std::vector<uint32_t>, 256> m_by_first_byte;  // indices into m_tokens, longest text first
};

}  // namespace ferry
