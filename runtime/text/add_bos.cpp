#include "ferry/text/add_bos.hpp"

#include <array>
#include <string>
#include <string_view>

#include "ferry/gguf.hpp"

namespace ferry {
namespace {

// llama.cpp's LLAMA_VOCAB_PRE_TYPE_LLAMA3 group and the other pre-tokenizers it gives add_bos = true.
constexpr std::array<std::string_view, 11> kBpePreAddingBos = {"llama3",       "llama-v3", "llama-bpe", "falcon3",
                                                               "falcon-h1",    "pixtral",  "midm-2.0",  "lfm2",
                                                               "jina-v5-nano", "tekken",   "chameleon"};

}  // namespace

bool model_adds_bos(const GgufFile& file) {
  if (const auto flag = file.get_optional<bool>("tokenizer.ggml.add_bos_token")) return *flag;
  const GgufValue* model = file.find("tokenizer.ggml.model");
  if (model == nullptr) return true;  // Tokenizer::from_gguf refuses such a file by name; nothing to decide
  const std::string kind = file.get_string("tokenizer.ggml.model");
  if (kind == "llama") return true;
  if (kind != "gpt2" || file.find("tokenizer.ggml.pre") == nullptr) return false;
  const std::string pre = file.get_string("tokenizer.ggml.pre");
  for (std::string_view p : kBpePreAddingBos)
    if (pre == p) return true;
  return false;
}

}  // namespace ferry
