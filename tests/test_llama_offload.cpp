// The llama forward pass under the layer scheduler: with every layer on the CPU it must equal the plain CPU runner
// bit for bit (same kernels, same order); GPU placements are tested in test_llama_gpu.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/cpu/cpu_ops.hpp"
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

TEST_CASE("a block's KV traffic names exactly the cache bytes a step writes, and every byte it reads") {
  // A phased layer's GPU steps move only these ranges between its host cache and the device: a byte written outside
  // `writes` would be lost, a byte read outside `reads` would be garbage. Checked on the CPU with three sequences:
  // bytes outside `writes` never change, and scrambling every byte outside `reads` and `writes` before the step
  // leaves its output bit for bit the same.
  const test::TempDir dir;
  const auto path = dir.path() / "tiny-kv.gguf";
  write_llama_model(llama_preset("tiny"), MakeModelOptions{ModelFileType::Q8_0, test::test_seed(31), 32, ""}, path);
  const GgufFile file = GgufFile::open(path);
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  constexpr int64_t kCtx = 16, kSeq = 3;
  const auto layers = make_llama_layers(c, w, kCtx, false, kSeq);
  const Layer& block = *layers[1];
  CpuOps ops;
  std::vector<QuantMatrixView> views;
  for (const WeightTensor& t : block.weights()) views.push_back(t.view);
  std::mt19937_64 rng(test::test_seed(32));
  std::vector<uint8_t> kv(block.kv_cache_bytes());
  for (auto& b : kv) b = static_cast<uint8_t>(rng());  // whatever earlier steps left
  auto run_step = [&](std::vector<uint8_t>& cache, const std::vector<StepSequence>& seqs, uint64_t seed) {
    int64_t n = 0;
    for (const StepSequence& q : seqs) n += q.n_tokens;
    std::vector<float> x(static_cast<size_t>(n * c.n_embd));
    std::mt19937_64 xr(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (float& v : x) v = u(xr);
    std::vector<float> workspace(block.workspace_floats(n, Device::CPU));
    StepContext step{n};
    step.sequences = seqs;
    const LayerRun run{&ops, workspace.data(), workspace.size(), cache.data(), nullptr, nullptr};
    block.forward(views, x.data(), step, run);
    return std::pair{x, step};
  };
  auto in = [](const std::vector<KvRange>& ranges, size_t byte) {
    return std::any_of(ranges.begin(), ranges.end(),
                       [&](const KvRange& r) { return byte >= r.offset && byte < r.offset + r.bytes; });
  };
  // Step 1: sequence 1 at its start, sequence 2 after 4 earlier positions, sequence 0 untouched; step 2 adds one
  // token to each.
  const std::vector<std::vector<StepSequence>> steps = {{{1, 0, 5}, {2, 4, 3}}, {{0, 0, 1}, {1, 5, 1}, {2, 7, 1}}};
  for (size_t k = 0; k < steps.size(); ++k) {
    CAPTURE(k);
    StepContext ctx{0};
    ctx.sequences = steps[k];
    for (const StepSequence& q : steps[k]) ctx.n_tokens += q.n_tokens;
    std::vector<KvRange> reads, writes;
    block.kv_cache_traffic(ctx, reads, writes);
    for (const KvRange& r : reads)
      CHECK_FALSE(std::any_of(writes.begin(), writes.end(), [&](const KvRange& wr) {
        return r.offset < wr.offset + wr.bytes && wr.offset < r.offset + r.bytes;
      }));
    // Scramble what the step neither reads nor writes: the output must not change.
    std::vector<uint8_t> scrambled = kv;
    for (size_t b = 0; b < scrambled.size(); ++b)
      if (!in(reads, b) && !in(writes, b)) scrambled[b] = static_cast<uint8_t>(rng());
    const std::vector<uint8_t> before = kv;
    const auto [x, step] = run_step(kv, steps[k], test::test_seed(40 + k));
    const auto [x_scrambled, step2] = run_step(scrambled, steps[k], test::test_seed(40 + k));
    CHECK(std::memcmp(x.data(), x_scrambled.data(), x.size() * sizeof(float)) == 0);
    // Bytes outside `writes` unchanged; inside, (nearly) every 16-bit value changed (a new K/V value equal to the old
    // random bits is a 1-in-65536 event per value).
    size_t written_values = 0, changed_values = 0;
    for (size_t b = 0; b < kv.size(); ++b)
      if (!in(writes, b)) REQUIRE(kv[b] == before[b]);
    for (size_t b = 0; b + 1 < kv.size(); b += 2)
      if (in(writes, b)) {
        ++written_values;
        changed_values += kv[b] != before[b] || kv[b + 1] != before[b + 1];
      }
    uint64_t expected = 0;
    for (const StepSequence& q : steps[k]) expected += 2 * static_cast<uint64_t>(q.n_tokens) * c.n_embd_kv();
    CHECK(written_values == expected);
    CHECK(changed_values + 2 >= written_values);
  }
}
