// Phased placement (placement.hpp: streamed in a prompt, on the CPU in decode) in the cost model and the `auto`
// planner, on synthetic stacks and hand-written device profiles: a phased layer is priced as the placement it resolves
// to at each step size; a decode step that interleaves phased and streamed layers costs about the larger of the CPU's
// time and the link's, not their sum; auto mixes phased and streamed layers where the CPU and the link are comparable,
// never where the link is far faster, and computes the step size up to which phased layers stay on the CPU.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/policies/cost_model.hpp"
#include "ferry/policies/planner.hpp"
#include "support/planner_inputs.hpp"
#include "support/rated_profiles.hpp"

using namespace ferry;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// support/planner_inputs.hpp's stack, with 1024 rows in each 2 MiB KV cache (so phased layers' K/V rows are priced).
StackProfile stack_of(int n, int64_t rows, int64_t max_tokens) {
  return test::llama_like_stack(n, rows, max_tokens, 1024);
}

// The CPU reads weights about as fast as the link copies them (2e10 B/s each): the case phased layers are for.
DeviceProfile balanced() {
  DeviceProfile d = test::rated_gpu();
  d.link = {{1 * kMiB, 2e10}, {16 * kMiB, 2e10}};
  d.cpu_gemv_bytes_per_s = {{"Q8_0", 2.2e10}};
  return d;
}

// A fast link (1e11 B/s) and a slow CPU (5e9 B/s): the CPU only slows decode down.
DeviceProfile fast_link() {
  DeviceProfile d = test::rated_gpu();
  d.link = {{1 * kMiB, 1e11}, {16 * kMiB, 1e11}};
  d.cpu_gemv_bytes_per_s = {{"Q8_0", 5e9}};
  return d;
}

PlanRequest request(Policy policy, uint64_t budget, int64_t max_tokens) {
  return test::plan_request(policy, budget, max_tokens);
}

uint64_t needs(const StackProfile& s, const DeviceProfile& d, const std::vector<Placement>& p,
               const StackOptions& options) {
  return compute_memory_plan(memory_plan_input(s.layers, p, options, d.context_bytes), 1).required_budget;
}

// The budget that holds the first `resident` layers of `s` resident and streams the rest through two slots.
uint64_t budget_with_resident(const StackProfile& s, const DeviceProfile& d, size_t resident) {
  std::vector<Placement> p(s.layers.size(), Placement::STREAMED);
  for (size_t i = 0; i < resident; ++i) p[i] = Placement::RESIDENT;
  return needs(s, d, p, request(Policy::AUTO, 0, s.max_tokens).options);
}

double run_seconds(const StackProfile& s, const DeviceProfile& d, const PlanRequest& r, const Plan& p) {
  return predict_run(s, p.placements, d, r.prompt_tokens, r.generated_tokens,
                     ScheduleShape{r.options.prefetch_depth, p.phased_cpu_max_tokens})
      .total_s;
}

// Relative closeness: doctest::Approx's default scale of 1 lets any two times of microseconds compare equal.
bool close(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

size_t count(const std::vector<Placement>& p, Placement which) {
  return static_cast<size_t>(std::count(p.begin(), p.end(), which));
}

}  // namespace

TEST_CASE("cost model: a phased layer is streamed above the threshold, on the CPU at and below it") {
  const DeviceProfile d = balanced();
  StackProfile s = stack_of(4, 8192, 64);
  const size_t n = s.layers.size();
  const std::vector<Placement> phased(n, Placement::PHASED), streamed(n, Placement::STREAMED), cpu(n, Placement::CPU);
  s.kv_cache_rows = 0;  // no K/V row size known: a GPU step of a phased layer is exactly a streamed one's
  for (int64_t threshold : {1, 8, 32}) {
    CAPTURE(threshold);
    const ScheduleShape shape{1, threshold};
    for (int64_t t : {int64_t{1}, threshold, threshold + 1, int64_t{64}}) {
      CAPTURE(t);
      const double got = predict_step(s, phased, d, t, shape).seconds;
      const double want = predict_step(s, t > threshold ? streamed : cpu, d, t, shape).seconds;
      CHECK(close(got, want));
      // And not the other one: the two differ at every step size here.
      CHECK_FALSE(close(got, predict_step(s, t > threshold ? cpu : streamed, d, t, shape).seconds));
    }
  }
  // Threshold 0: a phased layer always streams.
  CHECK(close(predict_step(s, phased, d, 1, ScheduleShape{1, 0}).seconds,
              predict_step(s, streamed, d, 1, ScheduleShape{1, 0}).seconds));

  // With the row size known (2 MiB over 1024 rows: 2 KiB a row), a GPU step of a phased layer also moves the rows it
  // wrote back to host memory: 64 rows, 128 KiB at the link's smallest measured rate (2e10).
  s.kv_cache_rows = 1024;
  const StackProfile one{"one", 64, {s.layers[0]}, 1024};
  const StepPrediction p = predict_step(one, std::vector<Placement>{Placement::PHASED}, d, 64, ScheduleShape{1, 8});
  const StepPrediction q = predict_step(one, std::vector<Placement>{Placement::STREAMED}, d, 64, ScheduleShape{1, 8});
  const double rows_s = 64.0 * 2048 / 2e10;
  CHECK(close(p.layers[0].kv_copy_s, rows_s));
  CHECK(q.layers[0].kv_copy_s == 0.0);
  CHECK(close(p.seconds, q.seconds + rows_s));
  // On the CPU (decode) nothing moves: the cache is in host memory.
  CHECK(predict_step(one, std::vector<Placement>{Placement::PHASED}, d, 1, ScheduleShape{1, 8}).layers[0].kv_copy_s ==
        0.0);
}

TEST_CASE("cost model: an interleaved phased/streamed decode step costs the larger of CPU and link, not the sum") {
  const DeviceProfile d = balanced();
  const StackProfile s = stack_of(16, 8192, 64);
  const size_t n = s.layers.size();
  std::vector<Placement> interleaved(n);
  for (size_t i = 0; i < n; ++i) interleaved[i] = i % 2 == 0 ? Placement::PHASED : Placement::STREAMED;
  const ScheduleShape shape{1, 8};
  const StepPrediction mixed = predict_step(s, interleaved, d, 1, shape);
  const double all_cpu = predict_step(s, std::vector<Placement>(n, Placement::CPU), d, 1, shape).seconds;
  const double all_streamed = predict_step(s, std::vector<Placement>(n, Placement::STREAMED), d, 1, shape).seconds;
  MESSAGE("decode step: interleaved " << mixed.seconds << " s, all CPU " << all_cpu << " s, all streamed "
                                      << all_streamed << " s; CPU busy " << mixed.cpu_busy_s << " s, copies "
                                      << mixed.copy_busy_s << " s");
  REQUIRE(mixed.cpu_busy_s > 0.0);
  REQUIRE(mixed.copy_busy_s > 0.0);
  // The CPU's and the link's halves overlap: near their maximum (GPU compute is a few % here), far below the sum.
  const double longer = std::max(mixed.cpu_busy_s, mixed.copy_busy_s);
  CHECK(mixed.seconds < 1.15 * longer);
  CHECK(mixed.seconds < 0.7 * (mixed.cpu_busy_s + mixed.copy_busy_s));
  CHECK(mixed.seconds < 0.7 * all_cpu);
  CHECK(mixed.seconds < 0.7 * all_streamed);
  // In a prompt step the same placement is all streamed, plus at most the phased blocks' K/V rows going back.
  const double prompt = predict_step(s, interleaved, d, 64, shape).seconds;
  const double prompt_streamed = predict_step(s, std::vector<Placement>(n, Placement::STREAMED), d, 64, shape).seconds;
  CHECK(prompt >= prompt_streamed * (1 - 1e-12));
  CHECK(prompt <= (prompt_streamed + 8 * 64.0 * 2048 / 2e10) * (1 + 1e-12));
}

TEST_CASE("auto: phased and streamed layers together where the CPU and the link are comparable") {
  const DeviceProfile d = balanced();
  const StackProfile s = stack_of(24, 8192, 64);  // 35.7 MB a block
  // A budget that holds about a third of the blocks resident, the rest streamed through two slots.
  const uint64_t budget = budget_with_resident(s, d, 8);
  const PlanRequest r = request(Policy::AUTO, budget, 64);
  const Plan a = make_plan(s, d, r);
  MESSAGE("auto: " << a.summary() << ", phased on the CPU up to " << a.phased_cpu_max_tokens << " tokens");
  CHECK(count(a.placements, Placement::PHASED) > 0);
  CHECK(count(a.placements, Placement::STREAMED) > 0);
  CHECK(a.memory.required_budget <= budget);
  CHECK(needs(s, d, a.placements, r.options) == a.memory.required_budget);
  CHECK(a.summary().find("phased") != std::string::npos);
  const double auto_s = run_seconds(s, d, r, a);
  for (Policy fixed : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM}) {
    CAPTURE(policy_name(fixed));
    const PlanRequest fr = request(fixed, budget, 64);
    const double fixed_s = run_seconds(s, d, fr, make_plan(s, d, fr));
    MESSAGE(policy_name(fixed) << ": " << fixed_s << " s, auto " << auto_s << " s");
    CHECK(auto_s < 0.9 * fixed_s);
  }
}

TEST_CASE("auto: no phased layer for a runner of several sequences, unless forced") {
  // The same case as above, with allow_phased off (a server): auto falls back to its family without phased layers.
  const DeviceProfile d = balanced();
  const StackProfile s = stack_of(24, 8192, 64);
  PlanRequest r = request(Policy::AUTO, budget_with_resident(s, d, 8), 64);
  REQUIRE(count(make_plan(s, d, r).placements, Placement::PHASED) > 0);
  r.allow_phased = false;
  const Plan a = make_plan(s, d, r);
  CAPTURE(a.summary());
  CHECK(count(a.placements, Placement::PHASED) == 0);
  r.overrides = {PlacementOverride{"--phased", "blk\\.2[0-3]", Placement::PHASED}};
  const Plan forced = make_plan(s, d, r);
  CAPTURE(forced.summary());
  CHECK(count(forced.placements, Placement::PHASED) == 4);
}

TEST_CASE("cost model: a chunked prompt pays for the K/V rows its phased layers read back") {
  // A 512-token prompt in steps of 64: chunk k of a phased layer's GPU steps reads the k * 64 rows before it, 64 * 28
  // rows over the eight chunks; the same prompt in one step reads none.
  const DeviceProfile d = balanced();
  StackProfile s = stack_of(4, 8192, 64);
  const size_t n = s.layers.size();
  std::vector<Placement> p(n, Placement::STREAMED);
  p[1] = p[3] = Placement::PHASED;
  const ScheduleShape shape{1, 8};
  const double with_rows = predict_run(s, p, d, 512, 0, shape).total_s;
  StackProfile no_rows = s;
  no_rows.kv_cache_rows = 0;  // nothing to price the rows with
  const double without = predict_run(no_rows, p, d, 512, 0, shape).total_s;
  const double row_s = (2.0 * kMiB / 1024) / 2e10;  // a row of the 2 MiB, 1024-row cache over the 2e10 B/s link
  const double reads = 2 * 64 * 28 * row_s;         // added to the prompt's time as they are
  const double downloads = 2 * 8 * 64 * row_s;      // in the play-out: hidden where the step waits for copies
  const double extra = with_rows - without;
  MESSAGE("K/V rows: " << extra << " s more, reads " << reads << " s, downloads " << downloads << " s");
  CHECK(extra >= reads * (1 - 1e-9));
  CHECK(extra <= (reads + downloads) * (1 + 1e-9));
  // Decode steps at the threshold 8 run the phased layers on the CPU: no rows move.
  CHECK(predict_run(s, p, d, 512, 16, shape).generate_tokens_per_s ==
        doctest::Approx(predict_run(no_rows, p, d, 512, 16, shape).generate_tokens_per_s).epsilon(1e-12));
}

TEST_CASE("auto: no phased layer where the link is far faster than the CPU") {
  const DeviceProfile d = fast_link();
  const StackProfile s = stack_of(24, 8192, 64);
  const PlanRequest r = request(Policy::AUTO, budget_with_resident(s, d, 8), 64);
  const Plan a = make_plan(s, d, r);
  CAPTURE(a.summary());
  CHECK(count(a.placements, Placement::PHASED) == 0);
  CHECK(count(a.placements, Placement::STREAMED) > 0);
}

TEST_CASE("auto: the phased threshold is computed from the profile, and grows with the CPU's speed") {
  const StackProfile s = stack_of(12, 8192, 64);
  const PlanRequest r = request(Policy::AUTO, 4 * (uint64_t{1} << 30), 64);
  // rated_gpu: the CPU reads 1e11 B/s, the link 1e10 B/s; the CPU's flops set where its time passes the copy's.
  int64_t previous = 0;
  for (double flops : {2e11, 5e11, 1e12, 2e12}) {
    DeviceProfile d = test::rated_gpu();
    d.cpu_gemm_flops = flops;
    const Plan a = make_plan(s, d, r);
    CAPTURE(flops);
    CHECK(a.phased_cpu_max_tokens >= 1);
    CHECK(a.phased_cpu_max_tokens <= kCpuInt8MaxTokens);
    CHECK(a.phased_cpu_max_tokens >= previous);
    // The largest T at which the CPU still beats the copy of a block: 2 * 8192 * 4096 * T / flops < rows * 4352 / 1e10.
    const double copy_s = 8192.0 * 4352 / 1e10;
    int64_t expected = 1;
    for (int64_t t = 1; t <= kCpuInt8MaxTokens; ++t) {
      const double cpu_s = std::max(8192.0 * 4352 / 1e11, 2.0 * 8192 * 4096 * static_cast<double>(t) / flops);
      if (cpu_s >= copy_s) break;
      expected = t;
    }
    CHECK(a.phased_cpu_max_tokens == expected);
    previous = a.phased_cpu_max_tokens;
  }
  // The slowest CPU keeps fewer tokens than the fastest: the threshold moved.
  DeviceProfile slow = test::rated_gpu(), quick = test::rated_gpu();
  slow.cpu_gemm_flops = 2e11;
  quick.cpu_gemm_flops = 2e12;
  CHECK(make_plan(s, slow, r).phased_cpu_max_tokens < make_plan(s, quick, r).phased_cpu_max_tokens);
  // A fixed policy keeps the request's threshold.
  PlanRequest fixed = request(Policy::RESIDENT_STREAM, r.vram_budget, 64);
  fixed.options.phased_cpu_max_tokens = 5;
  CHECK(make_plan(s, quick, fixed).phased_cpu_max_tokens == 5);
}

TEST_CASE("auto plans an 80-block model, mixing phased and streamed layers") {
  // Its time is printed, not checked (a timed test fails on a loaded or sanitized machine: 0.1 s in a Release build
  // on 2 cores, 2 s under ASan); `ferry plan` on a real model shows it to a user.
  const DeviceProfile d = balanced();
  const StackProfile s = stack_of(80, 8192, 512);
  const PlanRequest r = request(Policy::AUTO, budget_with_resident(s, d, 27), 512);
  const auto start = std::chrono::steady_clock::now();
  const Plan a = make_plan(s, d, r);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("auto over 81 layers: " << seconds << " s (" << a.summary() << ")");
  CHECK(count(a.placements, Placement::PHASED) > 0);
}
