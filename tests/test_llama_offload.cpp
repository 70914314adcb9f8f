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
#include "ferry/models/llama/profile.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/model_maker.hpp"
#include "support/llama_reference.hpp"
#include "support/rated_profiles.hpp"
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

TEST_CASE("auto takes smaller steps when that keeps more layers resident and is predicted faster, and only then") {
  const test::TempDir dir;
  const auto path = dir.path() / "small.gguf";
  write_llama_model(llama_preset("small"), MakeModelOptions{ModelFileType::Q8_0, test::test_seed(71), 32, ""}, path);
  const GgufFile file = GgufFile::open_header(path);  // sizing only: nothing runs
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  const DeviceProfile d = test::rated_gpu();
  LlamaRunnerOptions o;
  o.n_ctx = 1024;
  o.max_tokens = 512;
  o.policy = Policy::AUTO;
  o.planned_prompt_tokens = 512;
  o.planned_generated_tokens = 128;
  auto plan_at = [&](int64_t step_tokens, uint64_t budget, Policy policy) {
    LlamaRunnerOptions x = o;
    x.max_tokens = step_tokens;
    x.vram_budget = budget;
    x.policy = policy;
    return plan_llama_run(c, w, x, d);
  };
  auto all_resident_budget = [&](int64_t step_tokens) {
    return plan_at(step_tokens, uint64_t{64} << 30, Policy::RESIDENT_STREAM).memory.required_budget;
  };
  auto resident = [](const Plan& p) {
    return std::count(p.placements.begin(), p.placements.end(), Placement::RESIDENT);
  };
  // A budget at which steps of 512 tokens fit only with layers streamed (their activation buffers take the room),
  // while steps of 64 hold every layer resident.
  const uint64_t roomy = uint64_t{64} << 30;
  const uint64_t all_resident_64 = plan_at(64, roomy, Policy::RESIDENT_STREAM).memory.required_budget;
  const uint64_t all_resident_512 = plan_at(512, roomy, Policy::RESIDENT_STREAM).memory.required_budget;
  const uint64_t smallest_512 = plan_at(512, roomy, Policy::STREAM_ALL).memory.minimum_budget;
  const uint64_t tight = std::max(all_resident_64, smallest_512);
  REQUIRE(tight < all_resident_512);
  const auto n_layers = static_cast<long>(c.n_layer + 1);
  REQUIRE(resident(plan_at(64, tight, Policy::RESIDENT_STREAM)) == n_layers);
  REQUIRE(resident(plan_at(512, tight, Policy::RESIDENT_STREAM)) < n_layers);

  o.vram_budget = tight;
  const int64_t chosen = llama_step_tokens(c, w, o, d);
  CHECK(chosen < 512);
  CHECK(chosen >= kMinAutoStepTokens);
  const Plan at_chosen = plan_at(chosen, tight, Policy::AUTO);
  CHECK(resident(at_chosen) == n_layers);
  // Predicted faster than auto at the asked step size, for the planned workload.
  auto predicted = [&](int64_t step_tokens, const Plan& plan) {
    return predict_run(llama_stack_profile(c, w, o.n_ctx, step_tokens, false), plan.placements, d, 512, 128,
                       ScheduleShape{1, plan.phased_cpu_max_tokens})
        .total_s;
  };
  CHECK(predicted(chosen, at_chosen) < predicted(512, plan_at(512, tight, Policy::AUTO)));

  // Where everything fits at the asked size, smaller steps only cost dequantization passes: 512 stays.
  o.vram_budget = roomy;
  CHECK(llama_step_tokens(c, w, o, d) == 512);
  // Other policies, plan files and profiles without rates never change the step.
  o.vram_budget = tight;
  o.policy = Policy::RESIDENT_STREAM;
  CHECK(llama_step_tokens(c, w, o, d) == 512);
  o.policy = Policy::AUTO;
  DeviceProfile unrated{"no rates", true, d.context_bytes};
  CHECK(llama_step_tokens(c, w, o, unrated) == 512);
  // A server's steps hold one token of each of n_seq sequences: never fewer than n_seq + 1 tokens, even where a
  // smaller step would keep every layer resident (here 64 would, 128 would not: without the floor 64 wins).
  o.n_seq = 100;
  o.vram_budget = all_resident_budget(64);
  REQUIRE(o.vram_budget < all_resident_budget(128));
  const int64_t served = llama_step_tokens(c, w, o, d);
  CHECK(served >= 101);
}
