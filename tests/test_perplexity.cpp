// Perplexity (llama.cpp's method, ferry/text/perplexity.hpp) against a float64 implementation of the same method
// written here over the float64 llama reference: chunking, BOS replacement, second-half scoring, the mean and the
// uncertainty. Then its independence from the step size, its refusals, and the --logits-out file (layout parsed back).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/text/logits_file.hpp"
#include "ferry/text/perplexity.hpp"
#include "support/errors.hpp"
#include "support/llama_reference.hpp"
#include "support/logits_file_reader.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

// A tiny model with F32 weights: its CPU logits equal the float64 reference's to ~1e-6 relative (test_llama_cpu), so
// the comparison below measures the method, not quantization.
fs::path write_tiny_f32(const test::TempDir& dir, uint64_t seed) {
  const fs::path path = dir.path() / "tiny-f32.gguf";
  write_llama_model(llama_preset("tiny"), MakeModelOptions{ModelFileType::F32, seed, 32, ""}, path);
  return path;
}

struct TinyModel {
  TinyModel(const test::TempDir& dir, uint64_t seed)
      : path(write_tiny_f32(dir, seed)),
        file(GgufFile::open(path)),
        config(LlamaConfig::from_gguf(file)),
        weights(LlamaWeights::from_gguf(file, config)) {}
  fs::path path;
  GgufFile file;
  LlamaConfig config;
  LlamaWeights weights;
};

std::vector<int32_t> random_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> pick(3, static_cast<int32_t>(n_vocab) - 1);  // no <unk>, BOS, EOS
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = pick(rng);
  return t;
}

// llama.cpp's method over the float64 reference, written from its description (not from perplexity.cpp):
// chunks of n_ctx tokens from the start, the partial chunk at the end dropped; per chunk a fresh sequence whose first
// token is BOS when bos >= 0; the logits at positions n_ctx/2 .. n_ctx-2 scored against the next token of the text.
struct ReferencePerplexity {
  std::vector<double> running;  // exp(mean v) after each chunk
  double ppl = 0, uncertainty = 0;
  int64_t count = 0;
};

ReferencePerplexity reference_perplexity(const TinyModel& m, const std::vector<int32_t>& tokens, int64_t n_ctx,
                                         int32_t bos, int64_t max_chunks) {
  ReferencePerplexity r;
  int64_t n_chunks = static_cast<int64_t>(tokens.size()) / n_ctx;
  if (max_chunks > 0) n_chunks = std::min(n_chunks, max_chunks);
  const int64_t V = m.config.n_vocab;
  double sum = 0, sum_sq = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> input(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (bos >= 0) input[0] = bos;
    const std::vector<double> logits = test::llama_reference_logits(m.config, m.weights, input);
    for (int64_t j = n_ctx / 2; j + 1 < n_ctx; ++j) {
      const double* row = logits.data() + j * V;
      double max = row[0];
      for (int64_t k = 0; k < V; ++k) max = std::max(max, row[k]);
      double z = 0;
      for (int64_t k = 0; k < V; ++k) z += std::exp(row[k] - max);
      const double v = max + std::log(z) - row[tokens[static_cast<size_t>(c * n_ctx + j + 1)]];
      sum += v;
      sum_sq += v * v;
      ++r.count;
    }
    r.running.push_back(std::exp(sum / static_cast<double>(r.count)));
  }
  const double mean = sum / static_cast<double>(r.count);
  r.ppl = std::exp(mean);
  // The sample variance of v over count - 1 degrees of freedom... as llama.cpp: (E[v^2] - E[v]^2) / (count - 1),
  // i.e. the squared standard error of the mean, carried through exp by its derivative.
  r.uncertainty =
      r.ppl * std::sqrt((sum_sq / static_cast<double>(r.count) - mean * mean) / static_cast<double>(r.count - 1));
  return r;
}

double relative(double a, double b) { return std::abs(a - b) / std::abs(b); }

// A model whose logits are NaN at one position of the second chunk: the method must refuse, not print nan.
class PoisonedLm final : public CausalLm {
 public:
  int64_t n_ctx() const noexcept override { return 64; }
  int64_t n_vocab() const noexcept override { return 16; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override {
    const std::vector<float> noise = test::random_floats(logits.size(), test::test_seed(77) + m_calls++);
    std::copy(noise.begin(), noise.end(), logits.begin());
    if (all_logits && m_calls == 2 && pos0 <= 13 && 13 < pos0 + static_cast<int64_t>(tokens.size()))
      logits[static_cast<size_t>((13 - pos0) * 16 + 5)] = std::numeric_limits<float>::quiet_NaN();
  }

 private:
  int m_calls = 0;
};

}  // namespace

TEST_CASE("perplexity follows llama.cpp's method: equal to a float64 implementation of it") {
  const test::TempDir dir;
  const TinyModel m(dir, test::test_seed(41));
  const int64_t n_ctx = 32;
  // Three whole chunks and a partial one that must be ignored.
  const std::vector<int32_t> tokens = random_tokens(3 * n_ctx + 11, m.config.n_vocab, test::test_seed(42));
  struct Case {
    int32_t bos;
    int64_t max_chunks;
    int64_t batch;
  };
  for (const Case& cs : {Case{1, 0, 32}, Case{-1, 0, 32}, Case{1, 2, 8}, Case{1, 0, 5}}) {
    CAPTURE(cs.bos);
    CAPTURE(cs.max_chunks);
    CAPTURE(cs.batch);
    LlamaRunner runner(m.config, m.weights, test::cpu_runner_options(n_ctx, cs.batch));
    PerplexityOptions o;
    o.n_ctx = n_ctx;
    o.max_chunks = cs.max_chunks;
    o.batch = cs.batch;
    o.bos = cs.bos;
    std::vector<double> running;
    const PerplexityResult got =
        perplexity(runner, tokens, o, [&](const PerplexityProgress& p) { running.push_back(p.running_ppl); });
    const ReferencePerplexity want = reference_perplexity(m, tokens, n_ctx, cs.bos, cs.max_chunks);
    REQUIRE(got.n_chunks == static_cast<int64_t>(want.running.size()));
    CHECK(got.n_scored == want.count);
    CHECK(got.n_scored == got.n_chunks * (n_ctx - 1 - n_ctx / 2));
    REQUIRE(running.size() == want.running.size());
    // Tolerances 1e-4 (PPL) and 2e-4 (uncertainty) relative. The logits differ from the reference's by float32
    // accumulation and by the FP16 rounding of K/V from float here and from double there, one FP16 ulp apart at a
    // rounding flip (test_llama_cpu: ~1e-6 relative, up to ~1e-4); PPL = exp(mean v) moves by the mean difference of
    // v, and the uncertainty, a difference of two near-equal sums, a little more. Measured over FERRY_TEST_SEED=0..20:
    // at most 7.6e-6 (PPL) and 9.1e-6 (uncertainty). The method's own mistakes are far larger: scoring the whole
    // chunk or the wrong target moves PPL by percents, a missing BOS by ~1e-2, the uncertainty over count instead of
    // count - 1 by 1/(2 count) = 1.1e-2 here.
    for (size_t i = 0; i < running.size(); ++i) CHECK(relative(running[i], want.running[i]) <= 1e-4);
    CHECK(relative(got.ppl, want.ppl) <= 1e-4);
    CHECK(relative(got.uncertainty, want.uncertainty) <= 2e-4);
    CHECK(got.mean_nll == doctest::Approx(std::log(got.ppl)).epsilon(1e-12));
  }
}

TEST_CASE("perplexity does not depend on the step size, and every evaluated row goes to the logits sink") {
  const test::TempDir dir;
  const TinyModel m(dir, test::test_seed(43));
  const int64_t n_ctx = 24;
  const std::vector<int32_t> tokens = random_tokens(2 * n_ctx + 3, m.config.n_vocab, test::test_seed(44));
  PerplexityOptions o;
  o.n_ctx = n_ctx;
  o.bos = 1;
  o.batch = n_ctx;
  LlamaRunner whole(m.config, m.weights, test::cpu_runner_options(n_ctx, n_ctx));
  const PerplexityResult base = perplexity(whole, tokens, o);
  // Only the step size differs, and with it which K/V a step reads back from the FP16 cache rather than holding in
  // float, and the GEMM's blocking: float32 rounding, nothing more. Tolerances 1e-4 (PPL) and 2e-4 (uncertainty)
  // relative, as against the reference (measured over FERRY_TEST_SEED=0..20: at most 8.1e-6 and 1.7e-5). A stepping
  // bug (a wrong position, a stale cache row, a row scored twice or skipped) moves PPL by percents.
  for (int64_t batch : {1, 3, 7, 12}) {
    CAPTURE(batch);
    LlamaRunner stepped(m.config, m.weights, test::cpu_runner_options(n_ctx, batch));
    o.batch = batch;
    std::vector<std::pair<int64_t, int32_t>> rows;
    const PerplexityResult r = perplexity(stepped, tokens, o, {}, [&](int64_t pos, int32_t token, auto row) {
      CHECK(row.size() == static_cast<size_t>(m.config.n_vocab));
      rows.emplace_back(pos, token);
    });
    CHECK(relative(r.ppl, base.ppl) <= 1e-4);
    CHECK(relative(r.uncertainty, base.uncertainty) <= 2e-4);
    REQUIRE(rows.size() == static_cast<size_t>(2 * n_ctx));  // every position of both chunks, in order
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto pos = static_cast<int64_t>(i) % n_ctx;
      CHECK(rows[i].first == pos);
      CHECK(rows[i].second == (pos == 0 ? 1 : tokens[i]));  // the evaluated token: BOS replaces the first
    }
  }
}

TEST_CASE("perplexity refuses what the method cannot measure, naming the numbers") {
  const test::TempDir dir;
  const TinyModel m(dir, test::test_seed(45));
  LlamaRunner runner(m.config, m.weights, test::cpu_runner_options(64, 64));
  const std::vector<int32_t> tokens = random_tokens(100, m.config.n_vocab, test::test_seed(46));
  PerplexityOptions o;
  o.n_ctx = 64;  // 100 tokens < two chunks of 64
  const auto refusal = [&](const std::vector<int32_t>& t) {
    return test::error_of([&] { perplexity(runner, t, o); }, ErrorCategory::INVALID_ARGUMENT);
  };
  CHECK(test::contains(refusal(tokens), "at least 128"));
  o.n_ctx = 4;
  CHECK(test::contains(refusal(tokens), "too small"));
  o.n_ctx = 128;  // beyond the runner's context
  CHECK(test::contains(refusal(tokens), "context of 64"));
  o.n_ctx = 16;
  std::vector<int32_t> bad = tokens;
  bad[40] = static_cast<int32_t>(m.config.n_vocab);  // scored as a target before any forward pass sees it
  CHECK(test::contains(refusal(bad), "token 40"));

  PoisonedLm poisoned;
  PerplexityOptions p;
  p.n_ctx = 16;
  p.batch = 16;
  p.explain_non_finite = [] { return std::string("blk.0.attn_q.weight holds NaN"); };
  const std::vector<int32_t> small(40, 3);
  const std::string message = test::error_of([&] { perplexity(poisoned, small, p); }, ErrorCategory::FORMAT);
  CHECK_MESSAGE(test::contains(message, "chunk 2 at position 13"), message);
  CHECK(test::contains(message, "blk.0.attn_q.weight holds NaN"));
}

TEST_CASE("--logits-out layout: perplexity rows and generation rows parse back to the logits the model gave") {
  const test::TempDir dir;
  const TinyModel m(dir, test::test_seed(47));
  const int64_t n_ctx = 16, V = m.config.n_vocab;
  const std::vector<int32_t> tokens = random_tokens(2 * n_ctx, V, test::test_seed(48));
  LlamaRunner runner(m.config, m.weights, test::cpu_runner_options(n_ctx, n_ctx));
  PerplexityOptions o;
  o.n_ctx = n_ctx;
  o.bos = 1;
  o.batch = n_ctx;
  const fs::path path = dir.path() / "ppl.logits";
  {
    LogitsWriter writer(path, V);
    perplexity(runner, tokens, o, {},
               [&](int64_t pos, int32_t token, std::span<const float> row) { writer.write_row(pos, token, row); });
    CHECK(!fs::exists(path));  // nothing under the name before commit
    writer.commit();
  }
  const test::LogitsFile f = test::parse_logits_file(path);
  CHECK(f.version == 1);
  CHECK(f.n_vocab == V);
  REQUIRE(f.positions.size() == static_cast<size_t>(2 * n_ctx));
  for (int64_t chunk = 0; chunk < 2; ++chunk) {
    std::vector<int32_t> input(tokens.begin() + chunk * n_ctx, tokens.begin() + (chunk + 1) * n_ctx);
    input[0] = 1;
    std::vector<float> expected(static_cast<size_t>(n_ctx * V));
    runner.forward(input, 0, expected, true);
    for (int64_t p = 0; p < n_ctx; ++p) {
      const size_t r = static_cast<size_t>(chunk * n_ctx + p);
      CHECK(f.positions[r] == p);
      CHECK(f.tokens[r] == input[static_cast<size_t>(p)]);
    }
    CHECK(std::memcmp(f.logits.data() + chunk * n_ctx * V, expected.data(), expected.size() * sizeof(float)) == 0);
  }

  // Generation through the recorder: the prompt's rows, then one per decoded token; what the caller gets is the last
  // row, as from the runner itself.
  LlamaRunner gen(m.config, m.weights, test::cpu_runner_options(n_ctx, 4));
  const fs::path gen_path = dir.path() / "run.logits";
  const std::vector<int32_t> prompt = {1, 300, 301, 302, 303, 304};  // 6 tokens: two steps of 4 inside the runner
  std::vector<float> last(static_cast<size_t>(V)), direct(static_cast<size_t>(V));
  {
    LogitsWriter writer(gen_path, V);
    LogitsRecorder recorder(gen, writer);
    recorder.forward(prompt, 0, last, false);
    const int32_t next[1] = {7};
    recorder.forward(next, 6, last, false);
    writer.commit();
    CHECK(writer.rows() == 7);
  }
  LlamaRunner plain(m.config, m.weights, test::cpu_runner_options(n_ctx, 4));
  plain.forward(prompt, 0, direct, false);
  const int32_t next[1] = {7};
  plain.forward(next, 6, direct, false);
  CHECK(std::memcmp(last.data(), direct.data(), direct.size() * sizeof(float)) == 0);
  const test::LogitsFile g = test::parse_logits_file(gen_path);
  REQUIRE(g.positions.size() == 7);
  for (int32_t i = 0; i < 7; ++i) {
    CHECK(g.positions[static_cast<size_t>(i)] == i);
    CHECK(g.tokens[static_cast<size_t>(i)] == (i < 6 ? prompt[static_cast<size_t>(i)] : 7));
  }
  CHECK(std::memcmp(g.logits.data() + 6 * V, direct.data(), direct.size() * sizeof(float)) == 0);
}

