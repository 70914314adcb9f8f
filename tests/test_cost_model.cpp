// The cost model against hand-computed steps (resident, streamed through S slots, CPU), the `auto` planner against
// every fixed policy and against brute force over all placements of small stacks, and device profiles with measured
// rates through JSON.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/policies/cost_model.hpp"
#include "ferry/policies/planner.hpp"
#include "support/rated_profiles.hpp"
#include "support/seed.hpp"

using namespace ferry;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

// A layer of one Q8_0 matrix of rows x 4096: 34 bytes per 32 weights, so bytes = rows * 4352.
LayerDemand layer(const std::string& name, int64_t rows) {
  LayerDemand d;
  d.name = name;
  d.width = 4096;
  d.matmuls.push_back(QuantMatrixView{GgmlType::Q8_0, nullptr, 4096, rows});
  d.weight_bytes = static_cast<uint64_t>(rows) * 4352;
  d.kv_cache_bytes = 2 * kMiB;
  d.workspace_floats_cpu = d.workspace_floats_gpu = 1 << 16;
  return d;
}

using test::rated_gpu;  // support/rated_profiles.hpp

// The GPU's GEMM path for one Q8_0 matrix of rows x 4096 at `tokens` (> kGemvMaxTokens) on rated_gpu(), computed by
// hand: a dequantization pass (its bytes read, two bytes per weight written, at the memory rate; the profile's only
// GEMV rate, 1e12) and the flops at the GEMM rate (1e14) rid of that pass, as measured at 512 tokens.
double gemm_path(double rows, double tokens) {
  const double elements = rows * 4096, bytes = rows * 4352;
  const double dequant = (bytes + 2 * elements) / 1e12;
  return dequant + 2 * elements * tokens * (1 / 1e14 - dequant / (2 * elements * 512));
}

StackProfile stack_of(int n, int64_t rows, int64_t max_tokens) {
  StackProfile s;
  s.model = "test stack";
  s.max_tokens = max_tokens;
  for (int i = 0; i < n; ++i) s.layers.push_back(layer("blk." + std::to_string(i), rows));
  return s;
}

}  // namespace

TEST_CASE("cost model: each matrix at its own token count; a matrix that takes every token at the step's T") {
  const DeviceProfile d = rated_gpu();
  const std::vector<Placement> resident(1, Placement::RESIDENT);
  // As llama's layers declare it (every matrix at max_tokens) or not at all: the same price at every step size.
  StackProfile all = stack_of(1, 8192, 512);
  StackProfile undeclared = all;
  all.layers[0].matmul_tokens = {512};
  for (int64_t t : {1, 7, 300, 512}) {
    CAPTURE(t);
    const double expected = t <= kGemvMaxTokens
                                ? std::max(8192.0 * 4352 / 1e12, 2.0 * 8192 * 4096 * static_cast<double>(t) / 1e14)
                                : gemm_path(8192, static_cast<double>(t));
    CHECK(predict_step(all, resident, d, t, ScheduleShape{1}).seconds == doctest::Approx(expected));
    CHECK(predict_step(undeclared, resident, d, t, ScheduleShape{1}).seconds == doctest::Approx(expected));
  }
  // Two matrices of a 4608-token step, one on 4096 of its tokens, one on 512 (a Flux double block's img and txt
  // streams): each priced at its own count at max_tokens, and at its share, rounded up, of a smaller step.
  StackProfile split = stack_of(1, 8192, 4608);
  split.layers[0].matmuls.push_back(split.layers[0].matmuls[0]);
  split.layers[0].weight_bytes *= 2;
  split.layers[0].matmul_tokens = {4096, 512};
  auto gemm = [](double tokens) { return 2.0 * 8192 * 4096 * tokens / 1e14; };
  CHECK(predict_step(split, resident, d, 4608, ScheduleShape{1}).seconds ==
        doctest::Approx(gemm_path(8192, 4096) + gemm(512)));
  CHECK(predict_step(split, resident, d, 2304, ScheduleShape{1}).seconds ==
        doctest::Approx(gemm_path(8192, 2048) + gemm_path(8192, 256)));
  // 9 tokens: ceil(8) and ceil(1); one read of the weights bounds each matrix (8192 * 4352 / 1e12 > 8 tokens' GEMM).
  const double read = 8192.0 * 4352 / 1e12;
  CHECK(predict_step(split, resident, d, 9, ScheduleShape{1}).seconds ==
        doctest::Approx(std::max(read, gemm(8)) + std::max(read, gemm(1))));
}

TEST_CASE("cost model: the GPU's dequantization pass is paid per step, the GEMM rate as measured at 512 tokens") {
  // Device_sizing's threshold and the calibration size, as the kernels and `ferry calibrate` use them.
  CHECK(kGemvMaxTokens == device_sizing::kGemvMaxTokens);
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(1, 8192, 512);
  const std::vector<Placement> resident(1, Placement::RESIDENT);
  const double at_512 = 2.0 * 8192 * 4096 * 512 / 1e14;  // the measured rate, pass included
  CHECK(predict_step(s, resident, d, 512, ScheduleShape{1}).seconds == doctest::Approx(at_512));
  // Two steps of 256 tokens pay the pass twice: slower than one of 512 by exactly one pass; the prompt of 512 at
  // steps of 64 by seven passes.
  const double pass = (8192.0 * 4352 + 2.0 * 8192 * 4096) / 1e12;
  CHECK(2 * predict_step(s, resident, d, 256, ScheduleShape{1}).seconds == doctest::Approx(at_512 + pass));
  StackProfile small_steps = s;
  small_steps.max_tokens = 64;
  const RunPrediction r = predict_run(small_steps, resident, d, 512, 0, ScheduleShape{1});
  CHECK(512 / r.prompt_tokens_per_s == doctest::Approx(at_512 + 7 * pass));
  // The CPU has no such pass: its steps cost their flops (or their read) alone.
  const std::vector<Placement> cpu(1, Placement::CPU);
  CHECK(2 * predict_step(s, cpu, d, 256, ScheduleShape{1}).seconds ==
        doctest::Approx(predict_step(s, cpu, d, 512, ScheduleShape{1}).seconds));
}

TEST_CASE("cost model: the CPU's steps of 9..64 tokens at its int8 path's rate, when the profile has one") {
  CHECK(kCpuInt8MaxTokens == cpu::kCpuInt8MaxTokens);  // the kernels' split, repeated for the planner
  DeviceProfile d = rated_gpu();                       // CPU: 1e11 B/s, 1e12 flop/s
  const StackProfile s = stack_of(1, 8192, 512);
  const std::vector<Placement> cpu(1, Placement::CPU);
  const double flops_33 = 2.0 * 8192 * 4096 * 33, flops_65 = 2.0 * 8192 * 4096 * 65;
  // Without the rate (an older profile): the GEMM rate.
  CHECK(predict_step(s, cpu, d, 33, ScheduleShape{1}).seconds == doctest::Approx(flops_33 / 1e12));
  d.cpu_int8_flops = 4e12;
  CHECK(predict_step(s, cpu, d, 33, ScheduleShape{1}).seconds == doctest::Approx(flops_33 / 4e12));
  CHECK(predict_step(s, cpu, d, kCpuInt8MaxTokens + 1, ScheduleShape{1}).seconds == doctest::Approx(flops_65 / 1e12));
  // Up to kGemvMaxTokens the read bounds it as before.
  CHECK(predict_step(s, cpu, d, 1, ScheduleShape{1}).seconds == doctest::Approx(8192.0 * 4352 / 1e11));
}

TEST_CASE("cost model: resident, CPU and streamed steps as computed by hand") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(3, 8192, 512);  // 35.65 MB per layer (8192 * 4352 B)
  const double bytes = 8192.0 * 4352.0;
  const double gpu_read = bytes / 1e12, cpu_read = bytes / 1e11, copy = bytes / 1e10;

  // Decode (T = 1): reading the weights bounds every layer.
  const std::vector<Placement> resident(3, Placement::RESIDENT);
  CHECK(predict_step(s, resident, d, 1, ScheduleShape{1}).seconds == doctest::Approx(3 * gpu_read));
  const std::vector<Placement> cpu(3, Placement::CPU);
  CHECK(predict_step(s, cpu, d, 1, ScheduleShape{1}).seconds == doctest::Approx(3 * cpu_read));
  // Prefill (T = 512): 2 * 8192 * 4096 * 512 flops per layer on the GPU's 1e14 is above the read time.
  const double gpu_gemm = 2.0 * 8192 * 4096 * 512 / 1e14;
  REQUIRE(gpu_gemm > gpu_read);
  CHECK(predict_step(s, resident, d, 512, ScheduleShape{1}).seconds == doctest::Approx(3 * gpu_gemm));

  // Streamed, copies far slower than compute: the copy engine never rests, so the step is three copies and the last
  // layer's compute. The link's rate is the one measured at or below the copy's size (16 MiB: 1e10).
  const std::vector<Placement> streamed(3, Placement::STREAMED);
  const StepPrediction p = predict_step(s, streamed, d, 1, ScheduleShape{1});
  CHECK(p.seconds == doctest::Approx(3 * copy + gpu_read));
  CHECK(p.copy_busy_s == doctest::Approx(3 * copy));
  CHECK(p.layers[1].copy_s == doctest::Approx(copy));

  // Compute far slower than copies (prefill on a slow GPU) with S = 2 slots: layer 2's copy waits for layer 0 to free
  // its slot, then hides behind layer 1: copy, then three computes back to back.
  DeviceProfile slow = d;
  slow.gpu_gemm_flops = 1e11;
  const double slow_gemm = 2.0 * 8192 * 4096 * 512 / 1e11;
  REQUIRE(slow_gemm > 3 * copy);
  CHECK(predict_step(s, streamed, slow, 512, ScheduleShape{1}).seconds == doctest::Approx(copy + 3 * slow_gemm));

  // A mixed stack runs its layers in order: resident, then CPU, then streamed, whose copy started with the step and
  // is the longest part: the step is that copy and the last layer's compute.
  const std::vector<Placement> mixed = {Placement::RESIDENT, Placement::CPU, Placement::STREAMED};
  REQUIRE(copy > gpu_read + cpu_read);
  CHECK(predict_step(s, mixed, d, 1, ScheduleShape{1}).seconds == doctest::Approx(copy + gpu_read));
  const std::vector<Placement> cpu_last = {Placement::RESIDENT, Placement::STREAMED, Placement::CPU};
  CHECK(predict_step(s, cpu_last, d, 1, ScheduleShape{1}).seconds == doctest::Approx(copy + gpu_read + cpu_read));
}

TEST_CASE("cost model: more staging slots never predict a slower step") {
  const DeviceProfile d = rated_gpu();
  std::mt19937_64 rng(test::test_seed(778));
  for (int trial = 0; trial < 50; ++trial) {
    CAPTURE(trial);
    StackProfile s;
    s.max_tokens = 64;
    const int n = 2 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) s.layers.push_back(layer("blk." + std::to_string(i), 1024 * (1 + rng() % 32)));
    std::vector<Placement> p;
    for (int i = 0; i < n; ++i) p.push_back(static_cast<Placement>(rng() % 3));
    const int64_t T = rng() % 2 ? 1 : 64;
    double previous = INFINITY;
    for (int depth = 1; depth <= 4; ++depth) {
      const double t = predict_step(s, p, d, T, ScheduleShape{depth}).seconds;
      CHECK(t <= previous * (1 + 1e-12));
      previous = t;
    }
  }
}

TEST_CASE("cost model: refuses what it cannot predict") {
  const StackProfile s = stack_of(2, 1024, 8);
  DeviceProfile none{"hand-written", true, 500 * kMiB};  // no rates
  CHECK_FALSE(none.has_rates());
  DeviceProfile zero = rated_gpu();
  zero.gpu_gemv_bytes_per_s["Q4_0"] = 0.0;  // built in code: has_rates must not let a division by zero through
  CHECK_FALSE(zero.has_rates());
  CHECK_THROWS_AS(predict_step(s, std::vector<Placement>(2, Placement::CPU), none, 1, ScheduleShape{1}), Error);
  DeviceProfile cpu_only = rated_gpu();
  cpu_only.has_gpu = false;
  cpu_only.link.clear();
  CHECK(cpu_only.has_rates());
  CHECK_NOTHROW(predict_step(s, std::vector<Placement>(2, Placement::CPU), cpu_only, 1, ScheduleShape{1}));
  CHECK_THROWS_AS(predict_step(s, std::vector<Placement>(2, Placement::RESIDENT), cpu_only, 1, ScheduleShape{1}),
                  Error);
  CHECK_THROWS_AS(predict_step(s, std::vector<Placement>(3, Placement::CPU), cpu_only, 1, ScheduleShape{1}), Error);
}

TEST_CASE("auto is never predicted slower than a fixed policy, and fits the budget") {
  // Odd trials on a machine whose CPU reads about as fast as its link copies, where auto places phased layers.
  DeviceProfile comparable = rated_gpu();
  comparable.link = {{1 * kMiB, 2e10}, {16 * kMiB, 2e10}};
  comparable.cpu_gemv_bytes_per_s = {{"Q8_0", 2.2e10}};
  std::mt19937_64 rng(test::test_seed(777));
  int with_phased = 0;
  for (int trial = 0; trial < 60; ++trial) {
    CAPTURE(trial);
    const DeviceProfile d = trial % 2 == 0 ? rated_gpu() : comparable;
    const int n = 3 + static_cast<int>(rng() % 10);
    StackProfile s = stack_of(n, 2048 + static_cast<int64_t>(rng() % 16) * 1024, 64);
    s.kv_cache_rows = rng() % 2 ? 1024 : 0;
    const uint64_t budget = 600 * kMiB + rng() % (2 * kGiB);
    PlanRequest r;
    r.vram_budget = budget;
    r.options.max_tokens = 64;
    r.prompt_tokens = 1 + static_cast<int64_t>(rng() % 2048);
    r.generated_tokens = static_cast<int64_t>(rng() % 512);
    r.policy = Policy::AUTO;
    const Plan a = make_plan(s, d, r);
    CHECK(a.note.empty());
    CHECK(a.memory.required_budget <= budget);
    with_phased += std::count(a.placements.begin(), a.placements.end(), Placement::PHASED) > 0;
    const double auto_s = predict_run(s, a.placements, d, r.prompt_tokens, r.generated_tokens,
                                      ScheduleShape{r.options.prefetch_depth, a.phased_cpu_max_tokens})
                              .total_s;
    for (Policy fixed : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM, Policy::STREAM_ALL, Policy::CPU_ALL}) {
      r.policy = fixed;
      Plan p;
      try {
        p = make_plan(s, d, r);
      } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::BUDGET);  // a policy that cannot fit: nothing to compare
        continue;
      }
      const double fixed_s = predict_run(s, p.placements, d, r.prompt_tokens, r.generated_tokens,
                                         ScheduleShape{r.options.prefetch_depth, p.phased_cpu_max_tokens})
                                 .total_s;
      CAPTURE(policy_name(fixed));
      CHECK(auto_s <= fixed_s * (1 + 1e-12));
    }
  }
  MESSAGE(with_phased << " of 60 auto plans have phased layers");  // test_phased checks that auto places them
}

TEST_CASE("auto reaches the optimum of every resident/streamed/cpu placement on small stacks (brute force)") {
  // 3^n placements of n equal layers (phased ones are test_phased's); the budget is tight enough that not everything
  // fits resident.
  const DeviceProfile d = rated_gpu();
  for (int n : {2, 3, 4, 5}) {
    for (uint64_t budget : {700 * kMiB, 800 * kMiB, 900 * kMiB}) {
      CAPTURE(n);
      CAPTURE(budget);
      const StackProfile s = stack_of(n, 12288, 64);  // 53.5 MB per layer
      PlanRequest r;
      r.vram_budget = budget;
      r.options.max_tokens = 64;
      r.policy = Policy::AUTO;
      const Plan a = make_plan(s, d, r);
      const double auto_s = predict_run(s, a.placements, d, r.prompt_tokens, r.generated_tokens,
                                        ScheduleShape{1, a.phased_cpu_max_tokens})
                                .total_s;
      double best = INFINITY;
      std::vector<Placement> p(static_cast<size_t>(n));
      int total = 1;
      for (int i = 0; i < n; ++i) total *= 3;
      for (int code = 0; code < total; ++code) {
        for (int i = 0, c = code; i < n; ++i, c /= 3) p[static_cast<size_t>(i)] = static_cast<Placement>(c % 3);
        if (compute_memory_plan(memory_plan_input(s.layers, p, r.options, d.context_bytes), budget).required_budget >
            budget)
          continue;
        best = std::min(best, predict_run(s, p, d, r.prompt_tokens, r.generated_tokens, ScheduleShape{1}).total_s);
      }
      CHECK(auto_s <= best * (1 + 1e-12));
    }
  }
}

TEST_CASE("auto without measured rates plans as resident-stream and says why") {
  const StackProfile s = stack_of(4, 4096, 8);
  PlanRequest r;
  r.vram_budget = 8 * kGiB;
  r.options.max_tokens = 8;
  r.policy = Policy::AUTO;
  const Plan p = make_plan(s, DeviceProfile{"hand-written", true, 500 * kMiB}, r);
  CHECK(p.policy == Policy::RESIDENT_STREAM);
  CHECK(p.note.find("ferry calibrate") != std::string::npos);
  CHECK(parse_policy("auto") == Policy::AUTO);
}

TEST_CASE("a device profile with rates round-trips through JSON; corrupt rates are refused") {
  DeviceProfile d = rated_gpu();
  d.cpu_int8_flops = 3e12;
  const DeviceProfile e = DeviceProfile::from_json(d.to_json());
  CHECK(e.has_rates());
  CHECK(e.link.size() == 2);
  CHECK(e.link_rate(4 * kMiB) == 5e9);    // at or below: the 1 MiB point
  CHECK(e.link_rate(64 * kMiB) == 1e10);  // the 16 MiB point
  CHECK(e.link_rate(1024) == 5e9);        // below every point: the smallest
  CHECK(e.gpu_gemv_bytes_per_s.at("Q8_0") == 1e12);
  CHECK(e.cpu_gemm_flops == 1e12);
  CHECK(e.cpu_int8_flops == 3e12);
  CHECK(e.cpu_threads == 16);
  // A profile from before the int8 rate was measured reads as 0: not measured.
  CHECK(DeviceProfile::from_json(rated_gpu().to_json()).cpu_int8_flops == 0.0);
  for (const char* bad : {
           R"({"name": "x", "has_gpu": false, "context_bytes": 0, "cpu_gemm_flops": -1})",
           R"({"name": "x", "has_gpu": false, "context_bytes": 0, "cpu_int8_flops": -1})",
           R"({"name": "x", "has_gpu": false, "context_bytes": 0, "cpu_gemv_bytes_per_s": {"Q4_0": 0}})",
           R"({"name": "x", "has_gpu": true, "context_bytes": 0, "link": [{"bytes": 1, "bytes_per_s": 0}]})",
           R"({"name": "x", "has_gpu": false, "context_bytes": 0, "cpu_gemv_bytes_per_s": {"Q4_0": "fast"}})",
           R"({"name": "x", "has_gpu": true, "context_bytes": 0, "link": [{"bytes": 2}, {"bytes": 1}]})",
           R"({"name": "x", "has_gpu": true, "context_bytes": 0,
               "link": [{"bytes": 2, "bytes_per_s": 1}, {"bytes": 1, "bytes_per_s": 1}]})",
       }) {
    CAPTURE(bad);
    CHECK_THROWS_AS(DeviceProfile::from_json(bad), Error);
  }
}
