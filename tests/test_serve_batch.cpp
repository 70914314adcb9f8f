// Several sequences in one step (LlamaRunner::forward_sequences) and the server's engine over it, on the CPU with the
// tiny preset: a batched step gives every sequence the logits it gets run alone, and concurrent requests get the
// answers they get one at a time; stop sequences, token limits, cancellation and the refusals of submit().
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/tokenizer.hpp"
#include "ferry/text/utf8_stream.hpp"
#include "serve_engine.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;
using namespace ferry::serve;

namespace {

struct TinyModel {
  test::TempDir dir;
  std::filesystem::path path;
  GgufFile file;
  LlamaConfig config;
  LlamaWeights weights;
  Tokenizer tokenizer;

  TinyModel(ModelFileType type, uint64_t seed)
      : path(make(dir, type, seed)),
        file(GgufFile::open(path)),
        config(LlamaConfig::from_gguf(file)),
        weights(LlamaWeights::from_gguf(file, config)),
        tokenizer(Tokenizer::from_gguf(file)) {}

  static std::filesystem::path make(const test::TempDir& dir, ModelFileType type, uint64_t seed) {
    const std::filesystem::path p = dir.path() / "tiny.gguf";
    write_llama_model(llama_preset("tiny"), MakeModelOptions{type, seed, 32, ""}, p);
    return p;
  }
};

LlamaRunnerOptions cpu_options(int64_t n_seq, int64_t max_tokens, int64_t n_ctx = 64) {
  LlamaRunnerOptions o;
  o.n_ctx = n_ctx;
  o.max_tokens = max_tokens;
  o.vram_budget = 0;  // every layer on the CPU
  o.policy = Policy::CPU_ALL;
  o.n_seq = n_seq;
  return o;
}

std::vector<int32_t> random_tokens(std::mt19937_64& rng, int64_t n, int64_t n_vocab) {
  std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(n_vocab - 1));  // past <unk>, <s>, </s>
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& v : t) v = id(rng);
  return t;
}

// max |a - b| / max |b|: the logits' error against their own scale.
double scaled_error(std::span<const float> a, std::span<const float> b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

}  // namespace

TEST_CASE("a multi-sequence step gives each sequence the logits it gets alone") {
  // Tolerances, as the largest logit difference over the largest logit. F32 weights: the CPU never quantizes
  // activations for them, so a token's logits differ between a batched step and its own only by float summation
  // order (the GEMM path of steps over 8 tokens against the GEMV of a lone decode token), which the FP16 KV cache can
  // turn into one FP16 ulp on a value near a rounding midpoint: measured up to 1.7e-5; 1e-4 is the bound. Q8_0: a lone
  // decode token takes the GEMV, which rounds its activations to 8 bits; in a step of more than 8 tokens it takes the
  // float GEMM, the difference test_llama_cpu bounds by 3e-2 against the float64 reference, so 3e-2 here (measured
  // ~1.5e-2). Later steps of decode tokens only (T <= 8) take the same GEMV per token as alone, but attend to K and V
  // that the first, mixed steps wrote with that difference, so the same bound holds for them.
  struct Case {
    ModelFileType type;
    double mixed_tolerance, decode_tolerance;
  };
  for (const Case& cs : {Case{ModelFileType::F32, 1e-4, 1e-4}, Case{ModelFileType::Q8_0, 3e-2, 3e-2}}) {
    CAPTURE(model_file_type_name(cs.type));
    const TinyModel m(cs.type, test::test_seed(11));
    const int64_t V = m.config.n_vocab;
    std::mt19937_64 rng(test::test_seed(12));
    const std::vector<int64_t> lengths = {5, 11, 3};
    constexpr int kDecode = 4;
    std::vector<std::vector<int32_t>> prompts, decode;
    for (int64_t n : lengths) {
      prompts.push_back(random_tokens(rng, n, V));
      decode.push_back(random_tokens(rng, kDecode, V));
    }

    // Alone: each sequence's prompt, then its decode tokens one at a time; logits after each call.
    std::vector<std::vector<std::vector<float>>> alone(3);
    for (size_t s = 0; s < 3; ++s) {
      LlamaRunner runner(m.config, m.weights, cpu_options(1, 32));
      std::vector<float> logits(static_cast<size_t>(V));
      runner.forward(prompts[s], 0, logits, false);
      alone[s].push_back(logits);
      for (int i = 0; i < kDecode; ++i) {
        const int32_t one[1] = {decode[s][i]};
        runner.forward(one, static_cast<int64_t>(prompts[s].size()) + i, logits, false);
        alone[s].push_back(logits);
      }
    }

    // Together, sequence s in cache 2 - s. Step 1: sequences 0 and 2 read their whole prompts, sequence 1 the first
    // 6 tokens of its own (no logits). Step 2: 0 and 2 decode while 1 finishes its prompt. Then decode steps.
    LlamaRunner runner(m.config, m.weights, cpu_options(3, 32));
    std::vector<float> logits(static_cast<size_t>(3 * V));
    auto row = [&](size_t r) { return std::span<const float>(logits.data() + r * V, static_cast<size_t>(V)); };
    auto tokens = [](const std::vector<int32_t>& v, size_t from, size_t n) {
      return std::span<const int32_t>(v.data() + from, n);
    };
    const std::vector<SequenceChunk> step1 = {{2, 0, tokens(prompts[0], 0, 5), true},
                                              {1, 0, tokens(prompts[1], 0, 6), false},
                                              {0, 0, tokens(prompts[2], 0, 3), true}};
    runner.forward_sequences(step1, logits);
    CHECK(scaled_error(row(0), alone[0][0]) < cs.mixed_tolerance);
    CHECK(scaled_error(row(1), alone[2][0]) < cs.mixed_tolerance);
    const std::vector<SequenceChunk> step2 = {{2, 5, tokens(decode[0], 0, 1), true},
                                              {1, 6, tokens(prompts[1], 6, 5), true},
                                              {0, 3, tokens(decode[2], 0, 1), true}};
    runner.forward_sequences(step2, logits);
    CHECK(scaled_error(row(0), alone[0][1]) < cs.mixed_tolerance);
    CHECK(scaled_error(row(1), alone[1][0]) < cs.mixed_tolerance);
    CHECK(scaled_error(row(2), alone[2][1]) < cs.mixed_tolerance);
    // Sequence 1 is one token behind the others from here.
    for (int i = 1; i < kDecode; ++i) {
      CAPTURE(i);
      const std::vector<SequenceChunk> step = {{1, 11 + i - 1, tokens(decode[1], static_cast<size_t>(i - 1), 1), true},
                                               {0, 3 + i, tokens(decode[2], static_cast<size_t>(i), 1), true},
                                               {2, 5 + i, tokens(decode[0], static_cast<size_t>(i), 1), true}};
      runner.forward_sequences(step, logits);
      CHECK(scaled_error(row(0), alone[1][static_cast<size_t>(i)]) < cs.decode_tolerance);
      CHECK(scaled_error(row(1), alone[2][static_cast<size_t>(i + 1)]) < cs.decode_tolerance);
      CHECK(scaled_error(row(2), alone[0][static_cast<size_t>(i + 1)]) < cs.decode_tolerance);
    }
  }
}

TEST_CASE("forward_sequences refuses a repeated or unknown slot, an overflowing context and an oversized step") {
  const TinyModel m(ModelFileType::Q8_0, test::test_seed(13));
  LlamaRunner runner(m.config, m.weights, cpu_options(2, 8, 16));
  std::vector<float> logits(static_cast<size_t>(2 * m.config.n_vocab));
  const std::vector<int32_t> t = {5, 6, 7, 8, 9};
  const std::vector<int32_t> nine(9, 5);
  CHECK_THROWS_AS(runner.forward_sequences(std::vector<SequenceChunk>{{0, 0, t, true}, {0, 5, t, true}}, logits),
                  Error);
  CHECK_THROWS_AS(runner.forward_sequences(std::vector<SequenceChunk>{{2, 0, t, true}}, logits), Error);
  CHECK_THROWS_AS(runner.forward_sequences(std::vector<SequenceChunk>{{1, 12, t, true}}, logits), Error);
  CHECK_THROWS_AS(runner.forward_sequences(std::vector<SequenceChunk>{{0, 0, nine, true}}, logits), Error);
  CHECK_NOTHROW(runner.forward_sequences(std::vector<SequenceChunk>{{1, 11, t, true}}, logits));
}

namespace {

struct Answer {
  std::string text;
  std::vector<std::string> pieces;
  JobUpdate end;
};

Answer collect(Job& job) {
  Answer a;
  for (;;) {
    JobUpdate u = job.wait(std::chrono::milliseconds(100));
    if (!u.text.empty()) {
      a.text += u.text;
      a.pieces.push_back(u.text);
    }
    if (u.done) {
      a.end = u;
      return a;
    }
  }
}

GenerationRequest greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampler.temperature = 0.0f;
  r.label = "test";
  return r;
}

// Runs an engine on its own thread for the life of the object.
struct RunningEngine {
  RunnerLm lm;
  Engine engine;
  std::thread thread;
  RunningEngine(LlamaRunner& runner, const Tokenizer& tokenizer, EngineOptions options)
      : lm(runner), engine(lm, tokenizer, options), thread([this] { engine.run(); }) {}
  ~RunningEngine() {
    engine.shutdown();
    thread.join();
  }
};

EngineOptions quiet(int64_t chunk) {
  EngineOptions o;
  o.prefill_chunk = chunk;
  o.log = false;
  return o;
}

}  // namespace

TEST_CASE("concurrent requests get the greedy answers they get one at a time") {
  // F32 weights: batched and lone steps differ by float summation order only (see above), far below the gaps between
  // the tiny model's top logits, so greedy answers match exactly.
  const TinyModel m(ModelFileType::F32, test::test_seed(14));
  std::mt19937_64 rng(test::test_seed(15));
  std::vector<GenerationRequest> requests;
  for (int64_t n : {9, 3, 17, 6, 12}) requests.push_back(greedy(random_tokens(rng, n, m.config.n_vocab), 10));

  std::vector<Answer> alone;
  {
    LlamaRunner runner(m.config, m.weights, cpu_options(1, 64, 128));
    RunningEngine e(runner, m.tokenizer, quiet(64));
    for (const GenerationRequest& r : requests) alone.push_back(collect(*e.engine.submit(r)));
  }
  // Three slots for five requests (two wait in the queue), prompts read 4 tokens per step beside the decode tokens.
  std::vector<Answer> together;
  EngineMetrics metrics;
  {
    LlamaRunner runner(m.config, m.weights, cpu_options(3, 7, 128));
    RunningEngine e(runner, m.tokenizer, quiet(4));
    std::vector<std::shared_ptr<Job>> jobs;
    for (const GenerationRequest& r : requests) jobs.push_back(e.engine.submit(r));
    for (auto& job : jobs) together.push_back(collect(*job));
    metrics = e.engine.metrics();
  }
  // Alone, the engine answers as generate() does (the single-sequence path of `ferry run`).
  {
    LlamaRunner runner(m.config, m.weights, cpu_options(1, 64, 128));
    for (size_t i = 0; i < requests.size(); ++i) {
      CAPTURE(i);
      GenerateOptions g;
      g.prompt_tokens = requests[i].prompt;
      g.max_new_tokens = requests[i].max_tokens;
      g.sampler = requests[i].sampler;
      // The engine's text is whole characters, ill-formed bytes (the tiny vocabulary's byte tokens) replaced as they
      // come, piece by piece.
      Utf8Stream utf8;
      std::string text;
      const GenerateStats stats =
          generate(runner, m.tokenizer, g, [&](std::string_view piece) { text += utf8.push(piece); });
      text += utf8.flush();
      auto unspaced = [](std::string t) { return t.erase(0, t.find_first_not_of(' ')); };
      CHECK(unspaced(alone[i].text) == unspaced(text));
      CHECK(alone[i].end.usage.completion_tokens == stats.generated_tokens);
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    CAPTURE(i);
    CHECK(together[i].text == alone[i].text);
    CHECK(together[i].end.usage.completion_tokens == alone[i].end.usage.completion_tokens);
    CHECK(together[i].end.usage.prompt_tokens == static_cast<int64_t>(requests[i].prompt.size()));
    CHECK(together[i].end.finish == alone[i].end.finish);
    CHECK(together[i].end.error.empty());
  }
  CHECK(metrics.requests_finished == 5);
  // Batched: fewer steps than tokens processed (more than one sequence per step).
  CHECK(metrics.steps < metrics.step_tokens);
}

TEST_CASE("stop sequences cut the text before their first match; max_tokens ends with length") {
  const TinyModel m(ModelFileType::F32, test::test_seed(16));
  std::mt19937_64 rng(test::test_seed(17));
  LlamaRunner runner(m.config, m.weights, cpu_options(2, 16, 128));
  RunningEngine e(runner, m.tokenizer, quiet(8));
  const std::vector<int32_t> prompt = random_tokens(rng, 7, m.config.n_vocab);
  const Answer full = collect(*e.engine.submit(greedy(prompt, 24)));
  CHECK(full.end.finish == FinishReason::LENGTH);
  CHECK(full.end.usage.completion_tokens == 24);
  REQUIRE_MESSAGE(full.text.size() >= 12, full.text);

  // A stop sequence from the middle of the answer: the text ends right before its first occurrence, never past it
  // in any streamed piece.
  const std::string stop = full.text.substr(full.text.size() / 2, 4);
  GenerationRequest r = greedy(prompt, 24);
  r.stop = {"\x01never", stop};
  const Answer cut = collect(*e.engine.submit(r));
  CHECK(cut.end.finish == FinishReason::STOP);
  CHECK(cut.text == full.text.substr(0, full.text.find(stop)));
  CHECK(cut.end.usage.completion_tokens < 24);

  const Answer two = collect(*e.engine.submit(greedy(prompt, 2)));
  CHECK(two.end.finish == FinishReason::LENGTH);
  CHECK(two.end.usage.completion_tokens == 2);
  CHECK(full.text.rfind(two.text, 0) == 0);
}

TEST_CASE("a cancelled request frees its slot; submit refuses long prompts, a full queue and a stopping engine") {
  const TinyModel m(ModelFileType::Q8_0, test::test_seed(18));
  std::mt19937_64 rng(test::test_seed(19));
  LlamaRunner runner(m.config, m.weights, cpu_options(1, 16, 256));
  {
    RunningEngine e(runner, m.tokenizer, quiet(8));
    GenerationRequest long_one = greedy(random_tokens(rng, 5, m.config.n_vocab), 200);
    long_one.ignore_eos = true;  // it runs until cancelled, whatever the random model says
    const std::shared_ptr<Job> a = e.engine.submit(long_one);
    const std::shared_ptr<Job> b = e.engine.submit(greedy(random_tokens(rng, 5, m.config.n_vocab), 3));
    for (;;) {  // until a's first text: it holds the only slot, b waits
      const JobUpdate u = a->wait(std::chrono::milliseconds(50));
      if (!u.text.empty() || u.done) break;
    }
    a->cancel();
    const Answer rest = collect(*a);  // ends, without running to 200 tokens
    CHECK(rest.end.done);
    const Answer other = collect(*b);  // the only slot was freed for it
    CHECK(other.end.usage.completion_tokens == 3);
    const EngineMetrics metrics = e.engine.metrics();
    CHECK(metrics.requests_cancelled == 1);
    CHECK(metrics.requests_finished == 1);
    CHECK(metrics.generated_tokens == 3);
  }
  {
    RunnerLm lm(runner);
    EngineOptions o = quiet(8);
    o.max_queue = 1;
    Engine engine(lm, m.tokenizer, o);  // not running: submissions stay queued
    try {
      (void)engine.submit(greedy(random_tokens(rng, 256, m.config.n_vocab), 1));
      FAIL("a prompt as long as the context was accepted");
    } catch (const ApiError& e) {
      CHECK(e.status() == 400);
      CHECK(e.code() == "context_length_exceeded");
    }
    (void)engine.submit(greedy(random_tokens(rng, 255, m.config.n_vocab), 1));  // fits, with one token of answer
    try {
      (void)engine.submit(greedy(random_tokens(rng, 3, m.config.n_vocab), 1));
      FAIL("a request beyond the queue was accepted");
    } catch (const ApiError& e) {
      CHECK(e.status() == 503);
      CHECK(e.code() == "overloaded");
    }
    engine.shutdown();
    try {
      (void)engine.submit(greedy(random_tokens(rng, 3, m.config.n_vocab), 1));
      FAIL("a request after shutdown was accepted");
    } catch (const ApiError& e) {
      CHECK(e.status() == 503);
      CHECK(e.code() == "shutting_down");
    }
  }
}
