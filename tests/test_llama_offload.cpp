// The llama forward pass under the layer scheduler: with every layer on the CPU it must equal the plain CPU runner
// bit for bit (same kernels, same order); GPU placements are tested in test_llama_gpu.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/llama/block.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/models/llama/runner.hpp"
#include "support/llama_reference.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

TEST_CASE("offload runner with CPU placements equals the CPU runner bit for bit") {
  const test::TempDir dir;
  const auto path = dir.path() / "tiny.gguf";
  write_llama_model(llama_preset("tiny"), MakeModelOptions{ModelFileType::Q4_K_M, test::test_seed(7), 32, ""}, path);
  const GgufFile file = GgufFile::open(path);
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 11; ++i) prompt.push_back((i * 37 + 5) % static_cast<int32_t>(c.n_vocab));

  LlamaRunner cpu(c, w, test::cpu_runner_options(64, 8));
  LlamaRunnerOptions o;
  o.n_ctx = 64;
  o.max_tokens = 8;  // 11 tokens: two scheduler steps
  o.all_logits = true;
  o.policy = Policy::CPU_ALL;
  LlamaRunner offload(c, w, o);
  CHECK(offload.placement_summary() == "2 blocks: 2 cpu; output head: cpu");

  std::vector<float> a(prompt.size() * c.n_vocab), b(prompt.size() * c.n_vocab, NAN);
  cpu.forward(prompt, 0, a, true);
  offload.forward(prompt, 0, b, true);
  CHECK(a == b);
  // decode continues from the same caches
  std::vector<float> la(c.n_vocab), lb(c.n_vocab, NAN);
  for (int step = 0; step < 4; ++step) {
    const int32_t tok[1] = {static_cast<int32_t>((step * 101 + 3) % c.n_vocab)};
    cpu.forward(tok, static_cast<int64_t>(prompt.size()) + step, la, false);
    offload.forward(tok, static_cast<int64_t>(prompt.size()) + step, lb, false);
    CHECK(la == lb);
  }
  // Without all_logits the head keeps one row: the same last-token logits, and all-token requests are refused.
  LlamaRunnerOptions one_row = o;
  one_row.all_logits = false;
  LlamaRunner lean(c, w, one_row);
  std::vector<float> last(c.n_vocab, NAN), every(prompt.size() * c.n_vocab);
  lean.forward(prompt, 0, last, false);
  CHECK(std::equal(last.begin(), last.end(), a.end() - c.n_vocab));
  CHECK_THROWS_AS(lean.forward(prompt, 0, every, true), Error);
}

TEST_CASE("policies parse by name; unknown names are refused with the list") {
  CHECK(parse_policy("resident-first") == Policy::RESIDENT_FIRST);
  CHECK(parse_policy("stream-all") == Policy::STREAM_ALL);
  try {
    parse_policy("fastest");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("resident-stream") != std::string::npos);
  }
}
