// `ferry perplexity` as a user runs it on a tiny model made with `ferry make-model`: the printed figures, their
// independence from the step size and policy, the --logits-out file (and run's) parsed back and checked against the
// printed perplexity and the generated tokens, and every refusal with its exit status: flags checked before the model
// is loaded (2, naming the flag), an unreadable or ill-formed text (1), a text too short for two chunks and a chunk
// beyond the model's context (2).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "support/ferry_process.hpp"
#include "support/logits_file_reader.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

// English words the synthetic vocabulary holds as pieces, in a seeded random order: real-looking text of about one
// token per word.
fs::path write_text(const fs::path& dir, int words, uint64_t seed, const std::string& name = "text.txt") {
  static const char* kWords[] = {"the", "of",   "and",  "to",   "a",     "in",   "is",    "it",   "you",  "that",
                                 "he",  "was",  "for",  "on",   "are",   "with", "as",    "they", "be",   "at",
                                 "one", "have", "this", "from", "water", "time", "world", "word", "make", "layer"};
  std::mt19937_64 rng(seed);
  std::string text;
  for (int i = 0; i < words; ++i) {
    text += kWords[rng() % std::size(kWords)];
    text += (i % 13 == 12) ? ".\n" : " ";
  }
  const fs::path path = dir / name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The numbers printed on stdout: "[1]a,[2]b,...\nPPL = x +/- y\n".
struct Printed {
  std::vector<double> running;
  double ppl = NAN, uncertainty = NAN;
};

Printed parse_output(const std::string& out) {
  Printed p;
  size_t at = 0;
  while ((at = out.find('[', at)) != std::string::npos) {
    const size_t close = out.find(']', at);
    REQUIRE(close != std::string::npos);
    p.running.push_back(std::stod(out.substr(close + 1)));
    at = close;
  }
  const size_t ppl = out.find("PPL = ");
  REQUIRE_MESSAGE(ppl != std::string::npos, out);
  REQUIRE(std::sscanf(out.c_str() + ppl, "PPL = %lf +/- %lf", &p.ppl, &p.uncertainty) == 2);
  return p;
}

}  // namespace

TEST_CASE("ferry perplexity prints the running estimate and PPL = x +/- y, the same for every step size and policy") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::string text = write_text(dir.path(), 400, test_seed(61)).string();
  const Result base = run_ferry({"perplexity", model, "-f", text, "-c", "64"}, dir.path());
  REQUIRE_MESSAGE(base.status == 0, base.err);
  const Printed p = parse_output(base.out);
  CHECK(p.running.size() >= 3);
  CHECK(p.running.back() == doctest::Approx(p.ppl).epsilon(1e-4));  // the last running estimate is the result
  CHECK(p.ppl > 1.0);
  CHECK(p.uncertainty > 0.0);
  CHECK(p.uncertainty < p.ppl);
  CHECK_MESSAGE(contains(base.err, "chunks of 64 (scoring the last 31 of each)"), base.err);
  CHECK(contains(base.err, "BOS replacing each chunk's first token"));  // synthetic files say add_bos_token = true
  // Step sizes and placements change how a chunk is run, not what is computed: the same figures within the numeric
  // tolerance of the path. On the CPU a quantized model's matrix products round activations to 8 bits per block of 32
  // in one kernel and not in another, depending on the rows in a step (~0.4% per dot product, averaged over every
  // scored token: measured 5.9e-4 relative between --batch 1, 7 and 64 on this Q8_0 model); GPU layers add FP16
  // operands. Tolerance 1e-2 relative on every printed figure; the method itself is checked to 1e-4 against a float64
  // implementation in test_perplexity.
  for (const std::vector<std::string>& extra : {std::vector<std::string>{"--batch", "7"},
                                                {"--batch", "1"},
                                                {"--policy", "cpu-all"},
                                                {"--policy", "stream-all"},
                                                {"--vram", "1GiB"}}) {
    CAPTURE(extra[0] + " " + extra[1]);
    std::vector<std::string> args = {"perplexity", model, "-f", text, "-c", "64"};
    args.insert(args.end(), extra.begin(), extra.end());
    const Result r = run_ferry(args, dir.path());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    const Printed other = parse_output(r.out);
    REQUIRE(other.running.size() == p.running.size());
    for (size_t i = 0; i < p.running.size(); ++i)
      CHECK(other.running[i] == doctest::Approx(p.running[i]).epsilon(1e-2));
    CHECK(other.ppl == doctest::Approx(p.ppl).epsilon(1e-2));
    CHECK(other.uncertainty == doctest::Approx(p.uncertainty).epsilon(2e-2));
  }
  // The same path twice gives the same bytes.
  const Result again = run_ferry({"perplexity", model, "-f", text, "-c", "64"}, dir.path());
  CHECK(again.out == base.out);
  // --chunks N stops after N chunks: its figures are the first N running estimates.
  const Result two = run_ferry({"perplexity", model, "-f", text, "-c", "64", "--chunks", "2"}, dir.path());
  REQUIRE_MESSAGE(two.status == 0, two.err);
  const Printed q = parse_output(two.out);
  REQUIRE(q.running.size() == 2);
  CHECK(q.running[1] == p.running[1]);
  CHECK(q.ppl == doctest::Approx(q.running[1]).epsilon(1e-4));
}

TEST_CASE("ferry perplexity --logits-out: every evaluated row, from which the printed perplexity can be recomputed") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::string text = write_text(dir.path(), 200, test_seed(62)).string();
  const fs::path out = dir.path() / "ppl.logits";
  const Result r = run_ferry({"perplexity", model, "-f", text, "-c", "32", "--logits-out", out.string()}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const Printed p = parse_output(r.out);
  const LogitsFile f = parse_logits_file(out);
  CHECK(f.version == 1);
  CHECK(f.n_vocab == 512);  // the tiny preset's vocabulary
  const size_t n_chunks = p.running.size();
  REQUIRE(f.rows() == n_chunks * 32);
  // Recomputed from the file alone: rows at positions 16..30 of each chunk predict the token of the next row.
  double sum = 0, sum_sq = 0;
  int count = 0;
  for (size_t r = 0; r < f.rows(); ++r) {
    CHECK(f.positions[r] == static_cast<int32_t>(r % 32));
    if (r % 32 == 0) CHECK(f.tokens[r] == 1);  // BOS replaced each chunk's first token
    if (f.positions[r] < 16 || f.positions[r] == 31) continue;
    const float* row = f.logits.data() + r * f.n_vocab;
    const double max = *std::max_element(row, row + f.n_vocab);
    double z = 0;
    for (uint32_t k = 0; k < f.n_vocab; ++k) z += std::exp(row[k] - max);
    const double v = max + std::log(z) - row[f.tokens[r + 1]];
    sum += v;
    sum_sq += v * v;
    ++count;
  }
  CHECK(count == static_cast<int>(n_chunks * 15));
  const double mean = sum / count, ppl = std::exp(mean);
  CHECK(ppl == doctest::Approx(p.ppl).epsilon(1e-4));  // printed with 4 decimals
  CHECK(ppl * std::sqrt((sum_sq / count - mean * mean) / (count - 1)) == doctest::Approx(p.uncertainty).epsilon(1e-3));
  CHECK(outputs_in(dir.path()) == std::vector<std::string>{"ppl.logits", "text.txt"});  // no temporary left
}

TEST_CASE("ferry run --logits-out: the prompt's rows and one per generated token, each one's maximum the next token") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const fs::path out = dir.path() / "run.logits";
  const Result r =
      run_ferry({"run", model, "-p", "the water of the world", "-n", "6", "--logits-out", out.string()}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  long long prompt_tokens = 0, generated = 0;
  REQUIRE(std::sscanf(r.err.c_str() + r.err.find("prompt:"), "prompt: %lld tokens", &prompt_tokens) == 1);
  REQUIRE(std::sscanf(r.err.c_str() + r.err.find("generation:"), "generation: %lld tokens", &generated) == 1);
  const LogitsFile f = parse_logits_file(out);
  // The last generated token is printed, never evaluated.
  REQUIRE(f.rows() == static_cast<size_t>(prompt_tokens + generated - 1));
  CHECK(f.tokens[0] == 1);  // BOS
  for (size_t i = 0; i < f.rows(); ++i) CHECK(f.positions[i] == static_cast<int32_t>(i));
  // Greedy generation (the default): each generated token is the maximum of the row before it.
  for (size_t i = static_cast<size_t>(prompt_tokens) - 1; i + 1 < f.rows(); ++i) {
    const float* row = f.logits.data() + i * f.n_vocab;
    CHECK(std::max_element(row, row + f.n_vocab) - row == f.tokens[i + 1]);
  }
}

TEST_CASE("ferry perplexity: every flag is checked before the model is loaded; the text before it too") {
  TempDir dir;
  const std::string missing = (dir.path() / "not_loaded.gguf").string();
  const std::string text = write_text(dir.path(), 50, test_seed(63)).string();
  struct Case {
    std::vector<std::string> flags;
    int status;
    std::vector<std::string> mentioned;
  };
  const fs::path bad_utf8 = dir.path() / "bad.txt";
  std::ofstream(bad_utf8, std::ios::binary) << "fine text \xc3\x28 then";
  const std::vector<Case> cases = {
      {{"-c", "4"}, 2, {"--ctx", "at least 8"}},
      {{"--chunks", "-1"}, 2, {"--chunks"}},
      {{"--batch", "0"}, 2, {"--batch"}},
      {{"--vram", "garbage"}, 2, {"--vram", "garbage"}},
      {{"--policy", "nope"}, 2, {"--policy", "nope"}},
      {{"--logits-out", (dir.path() / "no_dir" / "x.logits").string()}, 1, {"--logits-out", "no_dir"}},
      {{"--logits-out", dir.path().string()}, 2, {"--logits-out", "directory"}},
      {{"-c", "abc"}, 2, {"--ctx"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"perplexity", missing, "-f", text};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const std::string command = command_line(args);
    CAPTURE(command);
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == c.status);
    CHECK(r.out.empty());
    CHECK_MESSAGE(!contains(r.err, "not_loaded.gguf"), r.err);
    for (const std::string& m : c.mentioned) CHECK_MESSAGE(contains(r.err, m), "missing '" << m << "': " << r.err);
  }
  // No -f at all: a usage error naming it.
  const Result no_text = run_ferry({"perplexity", missing}, dir.path());
  CHECK(no_text.status == 2);
  CHECK_MESSAGE(contains(no_text.err, "--file"), no_text.err);
  // A text that cannot be read, or is not UTF-8: bad input (exit 1), naming the file and where.
  const std::string absent = (dir.path() / "absent.txt").string();
  const Result unreadable = run_ferry({"perplexity", missing, "-f", absent}, dir.path());
  CHECK(unreadable.status == 1);
  CHECK_MESSAGE(contains(unreadable.err, absent), unreadable.err);
  CHECK(!contains(unreadable.err, "not_loaded.gguf"));
  const Result ill_formed = run_ferry({"perplexity", missing, "-f", bad_utf8.string()}, dir.path());
  CHECK(ill_formed.status == 1);
  CHECK_MESSAGE(contains(ill_formed.err, "UTF-8"), ill_formed.err);
  CHECK(contains(ill_formed.err, "byte 10"));
  CHECK(!contains(ill_formed.err, "not_loaded.gguf"));
}

TEST_CASE("ferry perplexity: a text shorter than two chunks, or chunks beyond the model's context, are refused") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::string text = write_text(dir.path(), 60, test_seed(64)).string();  // fewer than 2 * 64 tokens
  const Result short_text = run_ferry({"perplexity", model, "-f", text, "-c", "64"}, dir.path());
  CHECK(short_text.status == 2);
  CHECK(short_text.out.empty());  // nothing evaluated
  CHECK_MESSAGE(contains(short_text.err, "--ctx"), short_text.err);
  CHECK(contains(short_text.err, "at least 128 tokens (two chunks)"));
  CHECK(contains(short_text.err, text));
  const Result empty =
      run_ferry({"perplexity", model, "-f", write_text(dir.path(), 0, 0, "empty.txt").string(), "-c", "8"}, dir.path());
  CHECK(empty.status == 2);
  CHECK_MESSAGE(contains(empty.err, "has 1"), empty.err);  // BOS alone
  // The tiny preset's training context is 512 tokens.
  const Result too_long = run_ferry({"perplexity", model, "-f", text, "-c", "1024"}, dir.path());
  CHECK(too_long.status == 2);
  CHECK_MESSAGE(contains(too_long.err, "exceeds the training context"), too_long.err);
  CHECK(contains(too_long.err, "--force-ctx"));
  CHECK(too_long.out.empty());
}

TEST_CASE("ferry perplexity takes the overrides and plan files, and says so") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::string text = write_text(dir.path(), 200, test_seed(65)).string();
  Result r = run_ferry({"perplexity", model, "-f", text, "-c", "32", "--cpu", "blk\\..*"}, dir.path());
  CHECK_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.err, "--cpu 'blk\\..*')"), r.err);
  r = run_ferry({"perplexity", model, "-f", text, "-c", "32", "--stream", "nothing"}, dir.path());
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--stream: 'nothing' matches no layer"), r.err);
  // A plan file written by `ferry plan` on this machine, for the same context.
  const Result plan = run_ferry({"plan", model, "--ctx", "32", "--policy", "cpu-all", "--json"}, dir.path());
  REQUIRE_MESSAGE(plan.status == 0, plan.err);
  const fs::path file = dir.path() / "plan.json";
  std::ofstream(file) << plan.out;
  r = run_ferry({"perplexity", model, "-f", text, "-c", "32", "--plan", file.string()}, dir.path());
  CHECK_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.err, "(--plan " + file.string()), r.err);
  CHECK_MESSAGE(contains(r.err, "placements from the plan file"), r.err);
}
