// The offload engine on the GPU: identical outputs for random placements, prefetch depths and budgets; the budget
// refused before any allocation; the pinning-failure path; stream ordering read back from the trace; 1000 steps with
// flat arena, device and host memory; real Llama-13B and Flux widths. Skipped (exit 77) without a GPU.
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/offload/cuda/device_arena.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/scheduler.hpp"
#include "ferry/offload/size_parse.hpp"
#include "support/env_flag.hpp"
#include "support/errors.hpp"
#include "support/seed.hpp"
#include "support/synthetic_stack.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"
#include "test_offload_support.hpp"

using namespace ferry;

namespace {

using test::contains;
using test::error_of;

constexpr uint64_t kGiB = uint64_t{1} << 30;
// GPU vs CPU and GPU vs the float64 reference, on the layers' increment: the GPU GEMM rounds activations to FP16
// (2^-11 relative), the CPU GEMV to 8 bits per block of 32 (~0.4% per dot product); both compound over the layers.
constexpr double kCrossDeviceTolerance = 3e-2;

struct Quiet {
  std::vector<std::string> warnings;
  WarningSink sink() {
    return [this](const std::string& w) { warnings.push_back(w); };
  }
};

SchedulerOptions options_for(uint64_t budget, int depth, int64_t max_tokens, Quiet* quiet = nullptr) {
  SchedulerOptions o;
  o.vram_budget = budget;
  o.prefetch_depth = depth;
  o.max_tokens = max_tokens;
  if (quiet != nullptr) o.warn = quiet->sink();
  return o;
}

std::vector<float> run_once(LayerScheduler& s, const std::vector<float>& x0, int64_t n_tokens) {
  std::vector<float> x = x0;
  s.step(x.data(), n_tokens);
  return x;
}

std::string mask_of(const std::vector<Placement>& p) {
  std::string m;
  for (Placement q : p) m.push_back(q == Placement::CPU ? 'C' : 'G');
  return m;
}

std::string describe(const std::vector<Placement>& p) {
  std::string m;
  for (Placement q : p) m.push_back(q == Placement::CPU ? 'C' : q == Placement::RESIDENT ? 'R' : 'S');
  return m;
}

uint64_t required_budget(const SyntheticStack& stack, const std::vector<Placement>& p, const SchedulerOptions& o) {
  return compute_memory_plan(scheduler_memory_input(stack.layers(), p, o), o.vram_budget).required_budget;
}

}  // namespace

TEST_CASE("the context overhead is measured") {
  const DeviceMemoryBaseline& b = device_memory_baseline();
  MESSAGE("context overhead " << format_size(b.context_bytes) << " (" << b.method << "), device total "
                              << format_size(b.total_bytes));
  CHECK(b.context_bytes > 0);
  CHECK(b.context_bytes < b.total_bytes);
  CHECK_FALSE(b.method.empty());
}

TEST_CASE("random placements, prefetch depths and budgets give identical outputs") {
  const std::vector<int64_t> token_counts = {1, 6, 37};  // GEMV, GEMV, GEMM
  const int64_t max_tokens = 37;
  for (const SyntheticStackConfig& config :
       {SyntheticStackConfig{"q40", 7, 416, 1184, GgmlType::Q4_0, test::test_seed(101), 1e-5f},
        SyntheticStackConfig{"q4k", 6, 512, 1280, GgmlType::Q4_K, test::test_seed(102), 1e-6f}}) {
    CAPTURE(type_name(config.type));
    const SyntheticStack stack(config);
    const size_t n = stack.size();
    std::vector<std::vector<float>> inputs, reference;
    {
      LayerScheduler resident(stack.layers(), std::vector<Placement>(n, Placement::RESIDENT),
                              options_for(8 * kGiB, 1, max_tokens));
      for (int64_t t : token_counts) {
        inputs.push_back(stack.make_input(t, test::test_seed(500 + t)));
        reference.push_back(run_once(resident, inputs.back(), t));
        REQUIRE(test::all_finite(reference.back()));
        std::vector<float> f64 = inputs.back();
        test::reference_forward(stack, f64, t);
        CAPTURE(t);
        CHECK(test::increment_error(reference.back(), f64, inputs.back()) < kCrossDeviceTolerance);
      }
    }
    auto check_config = [&](const std::vector<Placement>& placements, int depth, uint64_t budget,
                            std::map<std::string, std::vector<std::vector<float>>>& by_mask) {
      CAPTURE(describe(placements));
      CAPTURE(depth);
      CAPTURE(budget);
      Quiet quiet;
      LayerScheduler s(stack.layers(), placements, options_for(budget, depth, max_tokens, &quiet));
      CHECK(s.memory().plan.total() <= budget);
      std::vector<std::vector<float>> outs;
      for (size_t i = 0; i < token_counts.size(); ++i) {
        outs.push_back(run_once(s, inputs[i], token_counts[i]));
        REQUIRE(test::all_finite(outs.back()));
      }
      // Twice over, so prefetches issued at the end of a step are used by the next.
      for (size_t i = 0; i < token_counts.size(); ++i)
        CHECK(test::bit_identical(outs[i], run_once(s, inputs[i], token_counts[i])));
      const bool has_cpu = std::find(placements.begin(), placements.end(), Placement::CPU) != placements.end();
      for (size_t i = 0; i < token_counts.size(); ++i) {
        CAPTURE(token_counts[i]);
        if (!has_cpu)
          CHECK(test::bit_identical(outs[i], reference[i]));
        else
          CHECK(test::increment_error(outs[i], reference[i], inputs[i]) < kCrossDeviceTolerance);
      }
      auto [it, fresh] = by_mask.emplace(mask_of(placements), outs);
      if (!fresh)
        for (size_t i = 0; i < token_counts.size(); ++i) CHECK(test::bit_identical(outs[i], it->second[i]));
    };

    std::mt19937_64 rng(config.seed);
    std::map<std::string, std::vector<std::vector<float>>> by_mask;
    for (int trial = 0; trial < 14; ++trial) {
      std::vector<Placement> p(n);
      for (Placement& q : p) q = static_cast<Placement>(rng() % 3);
      if (trial == 0) std::fill(p.begin(), p.end(), Placement::STREAMED);
      if (trial == 1) std::fill(p.begin(), p.end(), Placement::CPU);
      const int depth = 1 + static_cast<int>(rng() % 4);
      SchedulerOptions probe = options_for(8 * kGiB, depth, max_tokens);
      const uint64_t need = required_budget(stack, p, probe);
      const uint64_t budgets[] = {need, need + rng() % (256 << 20), 8 * kGiB};
      check_config(p, depth, budgets[trial % 3], by_mask);
      // Its twin: the same CPU layers, every GPU layer flipped between resident and streamed, another depth.
      std::vector<Placement> twin = p;
      for (Placement& q : twin)
        if (q != Placement::CPU) q = q == Placement::RESIDENT ? Placement::STREAMED : Placement::RESIDENT;
      const int twin_depth = 1 + (depth % 4);
      check_config(twin, twin_depth, required_budget(stack, twin, options_for(8 * kGiB, twin_depth, max_tokens)),
                   by_mask);
    }

    // Budgets from the minimum to ample, resident-first placement: always the all-resident bits.
    const SchedulerOptions probe = options_for(8 * kGiB, 2, max_tokens);
    const std::vector<Placement> streamed(n, Placement::STREAMED);
    const MemoryPlanInput input = scheduler_memory_input(stack.layers(), streamed, probe);
    const MemoryPlan plan = compute_memory_plan(input, 0);
    const uint64_t ample = required_budget(stack, std::vector<Placement>(n, Placement::RESIDENT), probe);
    for (int i = 0; i <= 5; ++i) {
      const uint64_t budget = plan.minimum_budget + (ample - plan.minimum_budget) * i / 5;
      check_config(resident_first_placement(input, budget), 2, budget, by_mask);
    }
  }
}

TEST_CASE("a budget below the minimum is refused before any allocation, naming the minimum") {
  const SyntheticStack stack(SyntheticStackConfig{"b", 5, 512, 1536, GgmlType::Q4_0, test::test_seed(7), 1e-5f});
  const std::vector<Placement> streamed(5, Placement::STREAMED), resident(5, Placement::RESIDENT);
  SchedulerOptions o = options_for(8 * kGiB, 1, 16);
  { LayerScheduler warm(stack.layers(), streamed, o); }  // context, modules and cuBLAS loaded before measuring
  const MemoryPlan plan = compute_memory_plan(scheduler_memory_input(stack.layers(), streamed, o), 0);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  // The process's own device memory (NVML), not the device's free memory: other tests run on the same card at once.
  // Under compute-sanitizer (FERRY_UNDER_SANITIZER, set by scripts/device-run.sh) the tool's own device allocations
  // grow as kernels run: the check applies to ferry alone.
  const std::optional<uint64_t> device_before =
      test::env_flag("FERRY_UNDER_SANITIZER") ? std::nullopt : process_device_bytes();
  if (!device_before) MESSAGE("device memory flatness not checked (no per-process NVML figure, or a sanitizer run)");
  o.vram_budget = plan.minimum_budget - 1;
  const std::string message = error_of([&] { LayerScheduler(stack.layers(), streamed, o); }, ErrorCategory::BUDGET);
  if (device_before) CHECK(process_device_bytes() == device_before);
  CHECK(contains(message, "below the minimum"));
  CHECK(contains(message, format_size(plan.minimum_budget)));
  CHECK(contains(message, std::to_string(plan.minimum_budget)));
  CHECK(contains(message, "staging slots"));
  // Above the minimum but below what all-resident needs: refused naming both.
  o.vram_budget = required_budget(stack, resident, o) - 1;
  const std::string second = error_of([&] { LayerScheduler(stack.layers(), resident, o); }, ErrorCategory::BUDGET);
  CHECK(contains(second, "does not hold this placement"));
  CHECK(contains(second, std::to_string(plan.minimum_budget)));
  if (device_before) CHECK(process_device_bytes() == device_before);
  // Exactly the minimum runs.
  o.vram_budget = plan.minimum_budget;
  LayerScheduler fits(stack.layers(), streamed, o);
  std::vector<float> x = stack.make_input(16, test::test_seed(3));
  fits.step(x.data(), 16);
  CHECK(test::all_finite(x));
}

TEST_CASE("the arena refuses a request beyond its category with the breakdown") {
  MemoryPlanInput in;
  in.layers = {{1 << 20, 0, Placement::RESIDENT}};
  in.activation_bytes = 4096;
  const MemoryPlan plan = plan_memory(in, 2 * kGiB);
  cuda::DeviceArena arena(plan);
  CHECK(arena.size() == plan.arena_bytes());
  void* a = arena.allocate(MemoryCategory::ACTIVATIONS, 3000, "x");
  CHECK(reinterpret_cast<uintptr_t>(a) % kArenaAlignment == 0);
  const std::string message =
      error_of([&] { arena.allocate(MemoryCategory::ACTIVATIONS, 2000, "too much"); }, ErrorCategory::BUDGET);
  CHECK(contains(message, "too much"));
  CHECK(contains(message, "reserved"));
  CHECK(contains(message, "resident weights"));
  CHECK(arena.high_water() == 3072);
}

TEST_CASE("when pinning fails, streaming from pageable memory gives the same outputs and reports its rate") {
  const SyntheticStack stack(SyntheticStackConfig{"p", 4, 512, 2048, GgmlType::Q4_0, test::test_seed(17), 1e-5f});
  const std::vector<Placement> streamed(4, Placement::STREAMED);
  const std::vector<float> x0 = stack.make_input(20, test::test_seed(5));
  Quiet pinned_quiet, pageable_quiet;
  LayerScheduler pinned(stack.layers(), streamed, options_for(8 * kGiB, 2, 20, &pinned_quiet));
  SchedulerOptions o = options_for(8 * kGiB, 2, 20, &pageable_quiet);
  o.simulate_pin_failure = true;
  LayerScheduler pageable(stack.layers(), streamed, o);
  CHECK(pinned.memory().host_pool_pinned);
  CHECK_FALSE(pageable.memory().host_pool_pinned);
  CHECK(pinned_quiet.warnings.empty());
  for (int i = 0; i < 3; ++i) CHECK(test::bit_identical(run_once(pinned, x0, 20), run_once(pageable, x0, 20)));
  REQUIRE(pageable_quiet.warnings.size() == 2);
  CHECK(contains(pageable_quiet.warnings[0], "RLIMIT_MEMLOCK"));
  CHECK(contains(pageable_quiet.warnings[1], "GB/s"));
  CHECK(pageable.last_step().copy_bytes == pinned.last_step().copy_bytes);
  CHECK(pageable.last_step().copy_gbps() > 0);
  MESSAGE("copy rate pinned " << pinned.last_step().copy_gbps() << " GB/s, pageable "
                              << pageable.last_step().copy_gbps() << " GB/s (small layers)");
}

TEST_CASE("the trace shows each streamed layer computed after its copy and copied after its slot was freed") {
  const test::TempDir dir;
  const SyntheticStack stack(SyntheticStackConfig{"t", 8, 512, 2048, GgmlType::Q4_K, test::test_seed(23), 1e-6f});
  std::vector<Placement> p(8, Placement::STREAMED);
  p[2] = Placement::RESIDENT;
  p[5] = Placement::CPU;
  for (int depth : {1, 2, 4}) {
    CAPTURE(depth);
    const size_t slots = static_cast<size_t>(depth) + 1;
    SchedulerOptions o = options_for(8 * kGiB, depth, 33);
    o.trace_path = dir.path() / ("trace" + std::to_string(depth) + ".json");
    {
      LayerScheduler s(stack.layers(), p, o);
      const std::vector<float> x0 = stack.make_input(33, test::test_seed(1));
      for (int step = 0; step < 3; ++step) run_once(s, x0, 33);
      // Per step: compute and copy spans of streamed layers, in stack order.
      std::map<int64_t, std::vector<const TraceSpan*>> copies, computes;
      for (const TraceSpan& span : s.trace().spans()) {
        if (span.track == TraceTrack::COPY) copies[span.step].push_back(&span);
        if (span.track == TraceTrack::COMPUTE && p[static_cast<size_t>(span.layer)] == Placement::STREAMED)
          computes[span.step].push_back(&span);
      }
      constexpr double kSlackUs = 2.0;  // event timestamps are converted through float milliseconds
      std::vector<const TraceSpan*> all_copies, all_computes;
      for (int64_t step = 0; step < 3; ++step) {
        REQUIRE(copies[step].size() == 6);
        REQUIRE(computes[step].size() == 6);
        all_copies.insert(all_copies.end(), copies[step].begin(), copies[step].end());
        all_computes.insert(all_computes.end(), computes[step].begin(), computes[step].end());
      }
      std::vector<const TraceSpan*> last_user(slots, nullptr);  // per slot, the compute span that used it last
      for (size_t g = 0; g < all_copies.size(); ++g) {
        CAPTURE(g);
        const size_t slot = (g % 6) % slots;  // streamed index within its step, mod S
        const TraceSpan& copy = *all_copies[g];
        const TraceSpan& compute = *all_computes[g];
        CHECK(copy.layer == compute.layer);
        CHECK(copy.bytes > 0);
        CHECK(compute.start_us + kSlackUs >= copy.start_us + copy.duration_us);  // waited for its copy
        if (last_user[slot] != nullptr)  // and the copy waited for the slot's previous user
          CHECK(copy.start_us + kSlackUs >= last_user[slot]->start_us + last_user[slot]->duration_us);
        if (g > 0) CHECK(copy.start_us + kSlackUs >= all_copies[g - 1]->start_us + all_copies[g - 1]->duration_us);
        last_user[slot] = &compute;
      }
    }
    std::ifstream in(o.trace_path);
    const nlohmann::json doc = nlohmann::json::parse(in);
    int tracks[4] = {0, 0, 0, 0};
    for (const auto& e : doc["traceEvents"])
      if (e["ph"] == "X") ++tracks[e["tid"].get<int>() - 1];
    CHECK(tracks[0] == 3 * 6);  // copies
    CHECK(tracks[1] == 3 * 7);  // GPU layers
    CHECK(tracks[2] == 3 * 1);  // the CPU layer
    CHECK(tracks[3] == 3 * 1);  // the host's wait for its input
  }
}

TEST_CASE("phased layers stream in prompt steps, run on the CPU in decode steps, and the link copies meanwhile") {
  // Phased layers alternating with streamed ones: a step of more than phased_cpu_max_tokens tokens must give the
  // outputs of the same layers all streamed (bit for bit: the same kernels on the same bytes), a smaller one those of
  // the phased layers on the CPU; steps of both kinds in every order (the copies issued ahead for the other kind are
  // wasted, never used). In decode, a streamed layer's copy must not wait for the CPU computing the phased layer before
  // it.
  const test::TempDir dir;
  const SyntheticStack stack(SyntheticStackConfig{"ph", 8, 2048, 8192, GgmlType::Q4_0, test::test_seed(71), 1e-5f});
  std::vector<Placement> phased(8), streamed(8, Placement::STREAMED), on_cpu(8);
  for (size_t i = 0; i < 8; ++i) {
    phased[i] = i % 2 == 0 ? Placement::PHASED : Placement::STREAMED;
    on_cpu[i] = i % 2 == 0 ? Placement::CPU : Placement::STREAMED;
  }
  const int64_t threshold = 4;
  for (int depth : {1, 3}) {
    CAPTURE(depth);
    SchedulerOptions o = options_for(8 * kGiB, depth, 16);
    o.phased_cpu_max_tokens = threshold;
    LayerScheduler as_streamed(stack.layers(), streamed, o);
    LayerScheduler as_cpu(stack.layers(), on_cpu, o);
    o.trace_path = dir.path() / ("phased" + std::to_string(depth) + ".json");
    LayerScheduler s(stack.layers(), phased, o);
    // Every transition between prompt (> 4 tokens) and decode steps, several times, and runs of decode steps.
    const int64_t steps[] = {16, 1, 4, 1, 1, 9, 1, 5, 16, 1, 2, 1};
    for (size_t k = 0; k < std::size(steps); ++k) {
      const int64_t n = steps[k];
      CAPTURE(n);
      const std::vector<float> x0 = stack.make_input(n, test::test_seed(200 + k));
      const std::vector<float> got = run_once(s, x0, n);
      REQUIRE(test::all_finite(got));
      LayerScheduler& reference = n > threshold ? as_streamed : as_cpu;
      CHECK(test::bit_identical(got, run_once(reference, x0, n)));
      // Prompt steps copy all 8 layers, decode steps the 4 streamed ones.
      CHECK(s.last_step().copy_bytes == reference.last_step().copy_bytes);
      CHECK((s.last_step().cpu_ms > 0) == (n <= threshold));
    }
    // The link does not wait for the CPU: with depth 1, the copies prefetched at the end of a decode step are those
    // of layers 1 and 3; layer 5's and 7's are issued during the step, and must begin before the CPU span of the
    // phased layer before them ends (a copy queued behind the CPU work would begin after it). In at least one of the
    // decode steps: other GPU tests share the link under `ctest -j`, and may hold a copy back once. (With depth 3 all
    // four streamed layers of a decode step are prefetched and often done before the first CPU span: nothing to see.)
    if (depth == 1 && test::timing_checks()) {
      bool concurrent = false;
      for (const TraceSpan& cpu : s.trace().spans()) {
        if (cpu.track != TraceTrack::CPU) continue;
        for (const TraceSpan& copy : s.trace().spans())
          if (copy.track == TraceTrack::COPY && copy.step == cpu.step && copy.layer == cpu.layer + 1 &&
              copy.layer >= 5 && copy.start_us < cpu.start_us + cpu.duration_us)
            concurrent = true;
      }
      CHECK(concurrent);
    }
  }
}

TEST_CASE("activations uploaded by kernel: the same outputs, and compute no longer waits for weight copies") {
  // Resident layers first, then two streamed ones of ~75 MB whose copies for the next step are issued at the end of
  // each step. With the copy engine, the next step's input upload queues behind those copies and the first resident
  // layer starts only after them (the H200's trace showed it); read by a kernel, the input is there at once. Mixed
  // in a CPU layer, whose output goes up the same way.
  const test::TempDir dir;
  const SyntheticStack stack(SyntheticStackConfig{"u", 6, 4096, 16384, GgmlType::Q4_0, test::test_seed(61), 1e-5f});
  const std::vector<Placement> p = {Placement::RESIDENT, Placement::RESIDENT, Placement::CPU,
                                    Placement::RESIDENT, Placement::STREAMED, Placement::STREAMED};
  const std::vector<float> x0 = stack.make_input(3, test::test_seed(62));
  std::vector<std::vector<float>> outputs;
  for (const auto upload :
       {SchedulerOptions::ActivationUpload::COPY_ENGINE, SchedulerOptions::ActivationUpload::KERNEL}) {
    const bool by_kernel = upload == SchedulerOptions::ActivationUpload::KERNEL;
    CAPTURE(by_kernel);
    SchedulerOptions o = options_for(8 * kGiB, 1, 8);
    o.activation_upload = upload;
    o.trace_path = dir.path() / (by_kernel ? "kernel.json" : "copy.json");
    LayerScheduler s(stack.layers(), p, o);
    std::vector<float> out;
    for (int step = 0; step < 4; ++step) out = run_once(s, x0, 3);
    REQUIRE(test::all_finite(out));
    outputs.push_back(out);
    if (!by_kernel || !test::timing_checks()) continue;
    // Steps 1..3 start with the two copies issued at the end of the step before: the first layer's compute must
    // begin before the first of them ends.
    for (int64_t step = 1; step < 4; ++step) {
      CAPTURE(step);
      const TraceSpan *first_copy = nullptr, *first_compute = nullptr;
      for (const TraceSpan& span : s.trace().spans()) {
        if (span.step != step) continue;
        if (span.track == TraceTrack::COPY && (first_copy == nullptr || span.start_us < first_copy->start_us))
          first_copy = &span;
        if (span.track == TraceTrack::COMPUTE && span.layer == 0) first_compute = &span;
      }
      REQUIRE(first_copy != nullptr);
      REQUIRE(first_compute != nullptr);
      CHECK(first_compute->start_us < first_copy->start_us + first_copy->duration_us);
    }
  }
  CHECK(test::bit_identical(outputs[0], outputs[1]));
}

TEST_CASE("FERRY_ACTIVATION_UPLOAD, FERRY_DECODE_GRAPHS and FERRY_FUSED_OPS with other values are refused, naming it") {
  const SyntheticStack stack(SyntheticStackConfig{"e", 2, 256, 512, GgmlType::Q8_0, test::test_seed(63), 1e-5f});
  const std::vector<Placement> p(2, Placement::RESIDENT);
  struct Case {
    const char* variable;
    const char* value;
    const char* expected;  // a word of the message's list of accepted values
  };
  for (const Case& c : {Case{"FERRY_ACTIVATION_UPLOAD", "dma", "kernel"}, Case{"FERRY_DECODE_GRAPHS", "yes", "off"},
                        Case{"FERRY_FUSED_OPS", "1", "on"}}) {
    CAPTURE(c.variable);
    const test::ScopedEnv env(c.variable, c.value);  // DEFAULT options are what read it
    const std::string e = error_of([&] { LayerScheduler s(stack.layers(), p, options_for(8 * kGiB, 1, 4)); },
                                   ErrorCategory::INVALID_ARGUMENT);
    CHECK(contains(e, std::string(c.variable) + "='" + c.value + "'"));
    CHECK(contains(e, c.expected));
  }
}

TEST_CASE("1000 steps keep the arena, device memory and host memory flat") {
  const SyntheticStack stack(SyntheticStackConfig{"f", 4, 256, 512, GgmlType::Q4_0, test::test_seed(29), 1e-5f});
  const std::vector<Placement> p = {Placement::RESIDENT, Placement::STREAMED, Placement::CPU, Placement::STREAMED};
  LayerScheduler s(stack.layers(), p, options_for(8 * kGiB, 2, 12));
  const std::vector<float> x0 = stack.make_input(12, test::test_seed(77));
  std::vector<float> x = x0;
  std::vector<std::vector<float>> first(3);
  for (int i = 0; i < 30; ++i) first[static_cast<size_t>(i % 3)] = run_once(s, x0, 4 * (i % 3) + 1);  // warm-up
  const MemoryReport before = s.memory();
  // The process's own device memory (NVML), not the device's free memory: other tests run on the same card at once.
  // Under compute-sanitizer (FERRY_UNDER_SANITIZER, set by scripts/device-run.sh) the tool's own device allocations
  // grow as kernels run: the check applies to ferry alone.
  const std::optional<uint64_t> device_before =
      test::env_flag("FERRY_UNDER_SANITIZER") ? std::nullopt : process_device_bytes();
  if (!device_before) MESSAGE("device memory flatness not checked (no per-process NVML figure, or a sanitizer run)");
  [[maybe_unused]] const uint64_t rss_before = test::peak_rss_bytes();  // unused under ASan
  const int steps = test::quick_mode() ? 100 : 1000;                    // FERRY_TEST_QUICK: sanitizer runs
  for (int i = 0; i < steps; ++i) {
    std::copy(x0.begin(), x0.end(), x.begin());
    s.step(x.data(), 4 * (i % 3) + 1);
    if (i % 97 == 0) REQUIRE(test::bit_identical(x, first[static_cast<size_t>(i % 3)]));
  }
  const MemoryReport after = s.memory();
  CHECK(after.arena_high_water == before.arena_high_water);
  CHECK(after.arena_used == before.arena_used);
  CHECK(after.host_high_water == before.host_high_water);
  if (device_before) CHECK(process_device_bytes() == device_before);
#if !defined(FERRY_TEST_ASAN)
  CHECK(test::peak_rss_bytes() <= rss_before + 256 * 1024);
#endif
}

TEST_CASE("process device memory stays within the budget") {
  // compute-sanitizer allocates device memory of its own inside this process (its shadow state): the process figure
  // then says nothing about ferry's budget.
  if (test::env_flag("FERRY_UNDER_SANITIZER")) {
    MESSAGE("process device memory not checked under compute-sanitizer (its own allocations count to the process)");
    return;
  }
  const SyntheticStack stack(SyntheticStackConfig{"m", 6, 1024, 2816, GgmlType::Q4_0, test::test_seed(31), 1e-5f});
  const std::vector<Placement> streamed(6, Placement::STREAMED);
  const DeviceMemoryBaseline& baseline = device_memory_baseline();
  SchedulerOptions o = options_for(8 * kGiB, 2, 64);
  const MemoryPlanInput input = scheduler_memory_input(stack.layers(), streamed, o);
  const uint64_t budget = compute_memory_plan(input, 0).minimum_budget + (64 << 20);
  o.vram_budget = budget;
  const std::vector<Placement> placement = resident_first_placement(input, budget);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  // The process's own device memory by NVML where it can say (other tests share the card: its free memory moves with
  // them); else the drop in the device's free memory plus the context measured at start.
  const bool per_process = process_device_bytes().has_value();
  const uint64_t free_before = device_free_bytes();
  uint64_t peak = 0;
  auto sample = [&] {
    peak =
        std::max(peak, per_process ? process_device_bytes().value_or(0)
                                   : free_before - std::min(free_before, device_free_bytes()) + baseline.context_bytes);
  };
  {
    LayerScheduler s(stack.layers(), placement, o);
    sample();
    for (int64_t t : {64, 1, 17}) {
      run_once(s, stack.make_input(t, test::test_seed(3)), t);
      sample();
    }
    MESSAGE("budget " << format_size(budget) << ": arena " << format_size(s.memory().arena_bytes)
                      << ", process device memory " << format_size(peak)
                      << std::string(per_process ? " (NVML, this process)" : " (free-memory drop + context)")
                      << "; context " << format_size(baseline.context_bytes) << " (" << baseline.method << ")");
    CHECK(peak <= budget);
    CHECK(s.memory().arena_high_water <= s.memory().arena_bytes);
  }
}

TEST_CASE("real widths: streamed and resident agree bit for bit, the CPU within tolerance") {
  for (const SyntheticStackConfig& config : {llama_13b_synthetic(3, GgmlType::Q4_0, test::test_seed(1)),
                                             flux_synthetic(2, GgmlType::Q4_K, test::test_seed(2))}) {
    CAPTURE(config.name_prefix);
    const SyntheticStack stack(config);
    const size_t n = stack.size();
    LayerScheduler resident(stack.layers(), std::vector<Placement>(n, Placement::RESIDENT),
                            options_for(8 * kGiB, 1, 64));
    LayerScheduler streamed(stack.layers(), std::vector<Placement>(n, Placement::STREAMED),
                            options_for(8 * kGiB, 2, 64));
    LayerScheduler cpu(stack.layers(), std::vector<Placement>(n, Placement::CPU), options_for(0, 1, 64));
    for (int64_t t : {1, 4, 64}) {
      CAPTURE(t);
      const std::vector<float> x0 = stack.make_input(t, test::test_seed(9));
      const std::vector<float> a = run_once(resident, x0, t);
      REQUIRE(test::all_finite(a));
      CHECK(test::bit_identical(a, run_once(streamed, x0, t)));
      if (t <= 4) CHECK(test::increment_error(run_once(cpu, x0, t), a, x0) < kCrossDeviceTolerance);
    }
  }
}
