// `ferry tokenize` as a user runs it: the `id 'piece'` lines and --ids on a tiny model from `ferry make-model`
// (SentencePiece vocabulary) and on a vocabulary-only byte-level BPE file written here; BOS and special tokens by the
// flags; pieces that are half a character or a newline printed escaped; the note when ferry falls back to the default
// pre-tokenizer; exit statuses 2 (flags, a prompt that is not UTF-8) and 1 (a missing or broken file).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/gguf_writer.hpp"
#include "support/byte_level.hpp"
#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using ferry::test::contains;
using ferry::test::make_tiny_model;
using ferry::test::Result;
using ferry::test::run_ferry;
using ferry::test::TempDir;

namespace {

std::vector<int> parse_ids(const std::string& line) {
  std::istringstream in(line);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

using ferry::test::byte_char;

// A vocabulary-only GGUF file: 256 byte tokens (id = byte), <|im_start|> (256, control), no merges, and the given
// tokenizer.ggml.pre.
fs::path write_byte_vocab(const fs::path& dir, const std::string& pre) {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (unsigned b = 0; b < 256; ++b) {
    tokens.push_back(byte_char(b));
    types.push_back(1);
  }
  tokens.push_back("<|im_start|>");
  types.push_back(3);
  ferry::GgufWriter w(32);
  w.set("general.architecture", ferry::GgufValue::string("llama"));
  w.set("tokenizer.ggml.model", ferry::GgufValue::string("gpt2"));
  if (!pre.empty()) w.set("tokenizer.ggml.pre", ferry::GgufValue::string(pre));
  w.set("tokenizer.ggml.tokens", ferry::GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.token_type", ferry::GgufValue::array(types));
  w.set("tokenizer.ggml.merges", ferry::GgufValue::string_array({}));
  w.set("tokenizer.ggml.bos_token_id", ferry::GgufValue::scalar<uint32_t>(256));
  const fs::path path = dir / ("vocab-" + (pre.empty() ? std::string("none") : pre) + ".gguf");
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE("ferry tokenize: id 'piece' lines, --ids, BOS by default for SentencePiece, --no-bos, --no-special") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result lines = run_ferry({"tokenize", model, "-p", "the the<s>"}, dir.path());
  REQUIRE_MESSAGE(lines.status == 0, lines.err);
  const Result ids = run_ferry({"tokenize", model, "-p", "the the<s>", "--ids"}, dir.path());
  REQUIRE(ids.status == 0);
  // The synthetic vocabulary has "▁the" (the word marker prints as a space); <s> is its control token 1.
  CHECK(lines.out.find("1 '<s>'\n") == 0);
  CHECK(contains(lines.out, " ' the'\n"));
  std::vector<int> from_lines;
  std::istringstream in(lines.out);
  for (std::string line; std::getline(in, line);) {
    CHECK(line.back() == '\'');
    from_lines.push_back(std::stoi(line));
  }
  const std::vector<int> id_list = parse_ids(ids.out);
  CHECK(id_list == from_lines);
  REQUIRE(id_list.size() == 4);
  CHECK(id_list.front() == 1);
  CHECK(id_list.back() == 1);  // "<s>" in the text is the control token
  const Result no_bos = run_ferry({"tokenize", model, "-p", "the the<s>", "--ids", "--no-bos"}, dir.path());
  CHECK(parse_ids(no_bos.out) == std::vector<int>(id_list.begin() + 1, id_list.end()));
  const Result plain = run_ferry({"tokenize", model, "-p", "the the<s>", "--ids", "--no-special"}, dir.path());
  const std::vector<int> plain_ids = parse_ids(plain.out);
  CHECK(plain_ids.size() > id_list.size());
  CHECK(std::count(plain_ids.begin(), plain_ids.end(), 1) == 1);  // only the BOS
}

TEST_CASE("ferry tokenize: byte-level pieces escaped, no BOS for GPT-2 vocabularies, fallback said on stderr") {
  TempDir dir;
  const fs::path known = write_byte_vocab(dir.path(), "gpt2");
  const Result r = run_ferry({"tokenize", known.string(), "-p", "a\n\xF0\x9F\x98\x80<|im_start|>'\\"}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(r.out ==
        "97 'a'\n10 '\\n'\n240 '\\xF0'\n159 '\\x9F'\n152 '\\x98'\n128 '\\x80'\n256 '<|im_start|>'\n39 '\\''\n"
        "92 '\\\\'\n");
  CHECK(r.err.empty());
  for (const std::string& pre : {std::string("no-such-pre"), std::string()}) {
    CAPTURE(pre);
    const fs::path file = write_byte_vocab(dir.path(), pre);
    const Result f = run_ferry({"tokenize", file.string(), "-p", "it's", "--ids"}, dir.path());
    CHECK(f.status == 0);
    CHECK(f.out == "105 116 39 115\n");
    CHECK(contains(f.err, file.string()));
    CHECK(contains(f.err, "'default' pre-tokenizer"));
    CHECK(contains(f.err, pre.empty() ? "no tokenizer.ggml.pre" : "'no-such-pre' is unknown"));
  }
}

TEST_CASE("ferry tokenize: usage errors exit 2, bad files exit 1, each named") {
  TempDir dir;
  const std::string vocab = write_byte_vocab(dir.path(), "gpt2").string();
  const fs::path not_gguf = dir.path() / "not-gguf.txt";
  std::ofstream(not_gguf) << "plain text, not a GGUF file\n";
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string mentioned;
  };
  const std::vector<Case> cases = {
      {{"tokenize", vocab}, 2, "--prompt"},
      {{"tokenize", "-p", "x"}, 2, "MODEL"},
      {{"tokenize", vocab, "-p", "ok\xC3("}, 2, "not valid UTF-8 (ill-formed byte sequence at byte 2)"},
      {{"tokenize", vocab, "-p", "x", "--bogus"}, 2, "--bogus"},
      {{"tokenize", (dir.path() / "missing.gguf").string(), "-p", "x"}, 1, "missing.gguf"},
      {{"tokenize", not_gguf.string(), "-p", "x"}, 1, "not-gguf.txt"},
  };
  for (const Case& c : cases) {
    const std::string command = ferry::test::command_line(c.args);
    CAPTURE(command);
    const Result r = run_ferry(c.args, dir.path());
    CHECK(r.status == c.status);
    CHECK_MESSAGE(contains(r.err, c.mentioned), r.err);
  }
}
