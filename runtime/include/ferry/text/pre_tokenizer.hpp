// The pre-tokenizer of a byte-level BPE vocabulary: how text is cut into words before the merges run, named by the
// GGUF key tokenizer.ggml.pre. Each name stands for a list of regular expressions, the ones the model's own
// tokenizer.json uses (as llama.cpp's llama-vocab.cpp lists them per pre-tokenizer type), applied in order: every
// expression cuts each piece left by the previous one into its matches and the text between them (Hugging Face's
// Split with the "isolated" behaviour). Matching is PCRE2's, with Unicode properties (\p{L}, \p{N}, Unicode \s).
//
// Text that is not valid UTF-8 never reaches the regular expressions: each ill-formed byte becomes a piece of its
// own (byte-level BPE encodes any byte), so a hostile prompt is encoded, not refused or crashed on.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ferry {

namespace detail {
class RegexList;
}

class PreTokenizer {
 public:
  // The pre-tokenizer that `name` (the value of tokenizer.ggml.pre; empty when the key is absent) stands for. An empty
  // or unknown name gives "default", llama.cpp's pre-tokenizer for files without one; name() tells which was applied,
  // so a caller can say so. Nothing is refused: an old file still tokenizes.
  static PreTokenizer for_name(std::string_view name);
  // Explicit expressions, applied in order (tests). Throws INVALID_ARGUMENT naming the expression that PCRE2 rejects.
  static PreTokenizer from_patterns(std::string name, const std::vector<std::string>& patterns,
                                    bool ignore_merges = false);

  // The pre-tokenizer applied: the name given when ferry knows it, else "default".
  const std::string& name() const noexcept { return m_name; }
  // llama-3's tokenizer looks a whole word up in the vocabulary before merging (Hugging Face's BPE ignore_merges):
  // a word that is a piece is one token even when the merges would split it.
  bool ignore_merges() const noexcept { return m_ignore_merges; }

  // The words of `text`, in order; together they are exactly `text`. Throws UNSUPPORTED when PCRE2 gives up on a
  // piece (its match or memory limit: megabytes of one pathological run).
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  std::string m_name;
  bool m_ignore_merges = false;
  std::shared_ptr<const detail::RegexList> m_regexes;  // compiled once, shared by copies (immutable)
};

// The tokenizer.ggml.pre names ferry knows (aliases included), for messages and tests.
std::span<const std::string_view> known_pre_tokenizers() noexcept;

}  // namespace ferry
