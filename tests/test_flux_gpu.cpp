// Flux on the GPU under every kind of placement (explicit mixes of resident, streamed and CPU layers, and the plans of
// every policy under a budget) against the CPU runner and the float64 reference; placements that run the same layers
// on the CPU must give bit-identical velocities (resident and streamed weights are the same bytes on the same
// kernels), also on a second call, when the first layers' copies were prefetched across steps.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/offload/size_parse.hpp"
#include "support/flux_reference.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

std::vector<std::vector<Placement>> placement_mixes(size_t n, uint64_t seed) {
  std::vector<std::vector<Placement>> mixes = {std::vector<Placement>(n, Placement::RESIDENT),
                                               std::vector<Placement>(n, Placement::STREAMED)};
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 4; ++i) {
    std::vector<Placement> p(n);
    for (auto& x : p) x = static_cast<Placement>(rng() % 3);
    mixes.push_back(p);
  }
  return mixes;
}

std::string describe(const std::vector<Placement>& p) {
  std::string s;
  for (Placement x : p) s += std::string(placement_name(x)).substr(0, 1);
  return s;
}

std::vector<float> call(FluxRunner& runner, const test::FluxReferenceInputs& in) {
  std::vector<float> v(static_cast<size_t>(in.n_img * 64), NAN);
  runner.forward(in.img, in.n_img, in.ids, in.timestep, in.guidance, in.y, v);
  return v;
}

}  // namespace

TEST_CASE("Flux on the GPU matches the CPU under every placement; equal CPU sets agree bit for bit") {
  const test::TempDir dir;
  // Tolerance 3e-2 against the CPU: GPU layers round GEMM operands to FP16 and GEMV activations to 8 bits per block
  // (as llama's GPU test documents), the CPU rounds its GEMV activations for Q8_0; both round K/V to FP16.
  for (const char* preset : {"flux-tiny", "flux-tiny-schnell"}) {
    const std::string name = preset;
    CAPTURE(name);
    const auto path = dir.path() / (name + ".gguf");
    write_flux_model(find_flux_preset(preset)->config, preset,
                     MakeModelOptions{ModelFileType::Q8_0, test::test_seed(1410), 32, ""}, path);
    const GgufFile file = GgufFile::open(path);
    const FluxConfig c = FluxConfig::from_gguf(file);
    const FluxWeights w = FluxWeights::from_gguf(file, c);
    const size_t n_layers = static_cast<size_t>(c.n_double + c.n_single) + 2;
    // 48 x 32 pixels with 7 text tokens (13 tokens: per-stream matmuls of 6 and 7 rows) and 128 x 96 with 5 (53).
    for (auto [width, height, n_txt] : {std::tuple{48, 32, 7}, {128, 96, 5}}) {
      CAPTURE(width);
      const test::FluxReferenceInputs in = test::make_flux_inputs(c, width, height, n_txt, test::test_seed(1411));
      const std::vector<double> reference = test::flux_reference_forward(c, w, in);
      FluxRunnerOptions o;
      o.max_tokens = 64;
      FluxRunner cpu(c, w, o, std::vector<Placement>(n_layers, Placement::CPU));
      cpu.set_text(in.txt, in.n_txt);
      const std::vector<float> expected = call(cpu, in);
      CHECK(test::flux_relative_error(expected, reference) <= 3e-2);
      std::map<std::vector<bool>, std::vector<float>> by_cpu_set;
      for (const auto& placements : placement_mixes(n_layers, test::test_seed(1412))) {
        CAPTURE(describe(placements));
        for (int depth : {1, 3}) {
          CAPTURE(depth);
          o.vram_budget = parse_budget("4GiB");
          o.prefetch_depth = depth;
          FluxRunner gpu(c, w, o, placements);
          gpu.set_text(in.txt, in.n_txt);
          const std::vector<float> got = call(gpu, in);
          for (float v : got) REQUIRE(std::isfinite(v));
          const double err = test::flux_relative_error(got, std::vector<double>(expected.begin(), expected.end()));
          MESSAGE("relative error against the CPU " << err);
          CHECK(err <= 3e-2);
          // A second call of the same inputs: the streamed layers' first copies were issued at the end of the first.
          const std::vector<float> again = call(gpu, in);
          CHECK(std::memcmp(again.data(), got.data(), got.size() * sizeof(float)) == 0);
          std::vector<bool> cpu_set;
          for (Placement p : placements) cpu_set.push_back(p == Placement::CPU);
          const auto [it, inserted] = by_cpu_set.emplace(cpu_set, got);
          if (!inserted) CHECK(std::memcmp(it->second.data(), got.data(), got.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}

TEST_CASE("Flux plans of every policy run under a budget, and resident equals streamed") {
  const test::TempDir dir;
  const auto path = dir.path() / "flux-small.gguf";
  write_flux_model(find_flux_preset("flux-small")->config, "flux-small",
                   MakeModelOptions{ModelFileType::Q4_0, test::test_seed(1413), 32, ""}, path);
  const GgufFile file = GgufFile::open(path);
  const FluxConfig c = FluxConfig::from_gguf(file);
  const FluxWeights w = FluxWeights::from_gguf(file, c);
  const test::FluxReferenceInputs in = test::make_flux_inputs(c, 256, 256, 32, test::test_seed(1414));  // 288 tokens
  FluxRunnerOptions o;
  o.max_tokens = 288;
  o.policy = Policy::CPU_ALL;
  FluxRunner cpu(c, w, o);
  cpu.set_text(in.txt, in.n_txt);
  const std::vector<float> expected = call(cpu, in);
  std::map<Policy, std::vector<float>> got;
  for (Policy policy : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM, Policy::STREAM_ALL}) {
    const std::string name(policy_name(policy));
    CAPTURE(name);
    o.policy = policy;
    o.vram_budget = parse_budget("2GiB");
    FluxRunner runner(c, w, o);
    MESSAGE(runner.placement_summary());
    runner.set_text(in.txt, in.n_txt);
    got[policy] = call(runner, in);
    CHECK(test::flux_relative_error(got[policy], std::vector<double>(expected.begin(), expected.end())) <= 3e-2);
    CHECK(runner.scheduler().memory().arena_high_water <= o.vram_budget);
  }
  // With a budget that holds the model, resident-stream keeps everything resident; stream-all streams every layer:
  // the same kernels on the same bytes.
  CHECK(std::memcmp(got[Policy::RESIDENT_STREAM].data(), got[Policy::STREAM_ALL].data(),
                    expected.size() * sizeof(float)) == 0);
}
