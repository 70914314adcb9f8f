// Several sequences in one step on the GPU (LlamaRunner::forward_sequences under resident, streamed, CPU and mixed
// placements): every sequence's logits against the same sequence run alone on the CPU. The per-sequence cache
// writes and attention calls take the GPU's attention scratch, carved for the whole step, one sequence at a time.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <span>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/offload/size_parse.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

double l2_error(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("GPU multi-sequence steps give each sequence the logits it gets alone on the CPU") {
  const test::TempDir dir;
  const auto path = dir.path() / "tiny-q8.gguf";
  write_llama_model(llama_preset("tiny"), MakeModelOptions{ModelFileType::Q8_0, test::test_seed(21), 32, ""}, path);
  const GgufFile file = GgufFile::open(path);
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  const int64_t V = c.n_vocab;
  std::mt19937_64 rng(test::test_seed(22));
  std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(V - 1));
  const std::vector<size_t> lengths = {5, 11, 3};
  constexpr int kDecode = 3;
  std::vector<std::vector<int32_t>> prompts, decode;
  for (size_t n : lengths) {
    prompts.emplace_back(n);
    for (int32_t& t : prompts.back()) t = id(rng);
    decode.emplace_back(kDecode);
    for (int32_t& t : decode.back()) t = id(rng);
  }
  // On the CPU, alone: [sequence][0: after the prompt, i: after decode token i].
  std::vector<std::vector<std::vector<float>>> alone(3);
  for (size_t s = 0; s < 3; ++s) {
    LlamaRunnerOptions o;
    o.n_ctx = 64;
    o.max_tokens = 32;
    LlamaRunner cpu(c, w, o, std::vector<Placement>(static_cast<size_t>(c.n_layer) + 1, Placement::CPU));
    std::vector<float> logits(static_cast<size_t>(V));
    cpu.forward(prompts[s], 0, logits, false);
    alone[s].push_back(logits);
    for (int i = 0; i < kDecode; ++i) {
      const int32_t one[1] = {decode[s][i]};
      cpu.forward(one, static_cast<int64_t>(prompts[s].size()) + i, logits, false);
      alone[s].push_back(logits);
    }
  }
  const size_t n = static_cast<size_t>(c.n_layer) + 1;
  std::vector<std::vector<Placement>> mixes = {std::vector<Placement>(n, Placement::RESIDENT),
                                               std::vector<Placement>(n, Placement::STREAMED),
                                               {Placement::STREAMED, Placement::CPU, Placement::RESIDENT}};
  for (const auto& placements : mixes) {
    CAPTURE(std::string(placement_name(placements[0])) + "," + std::string(placement_name(placements[1])));
    LlamaRunnerOptions o;
    o.n_ctx = 64;
    o.max_tokens = 24;
    o.n_seq = 3;
    o.vram_budget = parse_budget("4GiB");
    LlamaRunner gpu(c, w, o, placements);
    std::vector<float> logits(static_cast<size_t>(3 * V));
    auto row = [&](size_t r) { return std::span<const float>(logits.data() + r * V, static_cast<size_t>(V)); };
    auto tokens = [](const std::vector<int32_t>& v, size_t from, size_t k) {
      return std::span<const int32_t>(v.data() + from, k);
    };
    // 3e-2: GPU layers round GEMM operands and K/V to FP16 and GEMV activations to 8 bits per block (test_llama_gpu's
    // bound against the float64 reference); the CPU reference rounds its own way.
    constexpr double kTolerance = 3e-2;
    gpu.forward_sequences(std::vector<SequenceChunk>{{2, 0, tokens(prompts[0], 0, 5), true},
                                                     {1, 0, tokens(prompts[1], 0, 6), false},
                                                     {0, 0, tokens(prompts[2], 0, 3), true}},
                          logits);
    CHECK(l2_error(row(0), alone[0][0]) < kTolerance);
    CHECK(l2_error(row(1), alone[2][0]) < kTolerance);
    gpu.forward_sequences(std::vector<SequenceChunk>{{2, 5, tokens(decode[0], 0, 1), true},
                                                     {1, 6, tokens(prompts[1], 6, 5), true},
                                                     {0, 3, tokens(decode[2], 0, 1), true}},
                          logits);
    CHECK(l2_error(row(0), alone[0][1]) < kTolerance);
    CHECK(l2_error(row(1), alone[1][0]) < kTolerance);
    CHECK(l2_error(row(2), alone[2][1]) < kTolerance);
    for (int i = 1; i < kDecode; ++i) {
      CAPTURE(i);
      gpu.forward_sequences(
          std::vector<SequenceChunk>{{1, 11 + i - 1, tokens(decode[1], static_cast<size_t>(i - 1), 1), true},
                                     {0, 3 + i, tokens(decode[2], static_cast<size_t>(i), 1), true},
                                     {2, 5 + i, tokens(decode[0], static_cast<size_t>(i), 1), true}},
          logits);
      CHECK(l2_error(row(0), alone[1][static_cast<size_t>(i)]) < kTolerance);
      CHECK(l2_error(row(1), alone[2][static_cast<size_t>(i + 1)]) < kTolerance);
      CHECK(l2_error(row(2), alone[0][static_cast<size_t>(i + 1)]) < kTolerance);
    }
  }
}
