// `ferry tokenize MODEL -p TEXT [--ids] [--no-bos] [--no-special]`: the token ids the model's vocabulary gives a text,
// one `id 'piece'` per line (or the ids alone on one line, space-separated, with --ids). Only the tokenizer is read:
// the weights are neither checked nor loaded, so a vocabulary-only GGUF file works too.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/text/tokenizer.hpp"
#include "ferry/text/utf8.hpp"
#include "value_text.hpp"

namespace ferry::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  bool ids_only = false;
  bool no_bos = false;
  bool no_special = false;
};

// A piece as printed between single quotes: well-formed UTF-8 characters as they are, quotes, backslashes and
// control characters escaped, and the bytes of a character split over tokens (a byte token, half an emoji) as \xHH,
// so every line is one token and nothing reaches the terminal raw.
std::string escape_piece(std::string_view piece) {
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    const auto c = static_cast<unsigned char>(piece[i]);
    if (c >= 0x80) {
      const std::string_view rest = piece.substr(i);
      const size_t bad = first_invalid_utf8(rest);
      const size_t good = bad == kValidUtf8 ? rest.size() : bad;
      size_t take = 0;  // the whole characters before the next ASCII byte or ill-formed byte
      while (take < good && static_cast<unsigned char>(rest[take]) >= 0x80) ++take;
      if (take > 0) {
        out.append(rest.substr(0, take));
        i += take;
        continue;
      }
    }
    char buf[8];
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\'':
        out += "\\'";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          std::snprintf(buf, sizeof buf, "\\x%02X", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  return out;
}

int run_tokenize(const TokenizeOptions& options) {
  if (const size_t at = first_invalid_utf8(options.prompt); at != kValidUtf8)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "--prompt: the text is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  const GgufFile file = GgufFile::open(options.model);
  const Tokenizer tokenizer = Tokenizer::from_gguf(file);
  // A fallback is said once, on stderr: the ids are still printed (llama.cpp tokenizes such files the same way).
  const std::string& asked = tokenizer.pre_tokenizer_requested();
  if (tokenizer.kind() == TokenizerKind::BPE && asked != tokenizer.pre_tokenizer_name()) {
    const std::string why = asked.empty() ? std::string("the file has no tokenizer.ggml.pre")
                                          : "tokenizer.ggml.pre " + quote_name(asked) + " is unknown to ferry";
    std::fprintf(stderr, "ferry: note: %s: %s; using the '%s' pre-tokenizer (tokens may differ from the model's own)\n",
                 file.name().c_str(), why.c_str(), tokenizer.pre_tokenizer_name().c_str());
  }
  const bool add_bos = !options.no_bos && tokenizer.add_bos_default();
  const std::vector<int32_t> ids = tokenizer.encode(options.prompt, add_bos, !options.no_special);
  std::string text;
  if (options.ids_only) {
    for (size_t i = 0; i < ids.size(); ++i) text += concat(i ? " " : "", std::to_string(ids[i]));
    text += '\n';
  } else {
    for (int32_t id : ids)
      text += concat(std::to_string(id), " '", escape_piece(tokenizer.token_to_piece(id, true)), "'\n");
  }
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
    fail(ErrorCategory::IO, std::string("tokenize: cannot write to standard output: ") + std::strerror(errno));
  return 0;
}

}  // namespace

Action add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* sub = app.add_subcommand("tokenize", "Show the tokens a model's vocabulary gives a text");
  sub->add_option("MODEL", options->model, "GGUF file (only its tokenizer.ggml.* metadata is read)")->required();
  sub->add_option("-p,--prompt", options->prompt, "The text to tokenize (UTF-8)")->required();
  sub->add_flag("--ids", options->ids_only, "Print only the ids, space-separated on one line");
  sub->add_flag("--no-bos", options->no_bos,
                "Never put the BOS token first (by default it is, when the model's metadata asks for it)");
  sub->add_flag("--no-special", options->no_special,
                "Encode control tokens written in the text (<|im_start|>) as plain text instead of as their ids");
  return [options] { return run_tokenize(*options); };
}

}  // namespace ferry::cli
