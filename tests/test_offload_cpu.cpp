// The offload engine on the CPU: the scheduler with CPU placements against the float64 reference, the pinned host
// pool's layout and its pinning-failure path, the Chrome trace, the refusals a CPU-only machine gives, and 1000 steps
// with flat host memory. Runs in every build (a CUDA build without a GPU takes the same paths).
#include <doctest/doctest.h>
#include <tbb/task_arena.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/kernels/cpu/cpu_ops.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/host_pool.hpp"
#include "ferry/offload/scheduler.hpp"
#include "support/errors.hpp"
#include "support/seed.hpp"
#include "support/synthetic_stack.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"
#include "test_offload_support.hpp"

using namespace ferry;
namespace fs = std::filesystem;

namespace {

using test::contains;
using test::error_of;

// Small stacks (the CPU machine has two cores) with the structure of the real ones: widths that are odd multiples of
// the block size, both block families.
SyntheticStackConfig small_q4_0(int64_t layers, uint64_t seed) {
  return SyntheticStackConfig{"q40", layers, 160, 352, GgmlType::Q4_0, seed, 1e-5f};
}
SyntheticStackConfig small_q4_k(int64_t layers, uint64_t seed) {
  return SyntheticStackConfig{"q4k", layers, 256, 768, GgmlType::Q4_K, seed, 1e-6f};
}

std::vector<Placement> all(size_t n, Placement p) { return std::vector<Placement>(n, p); }

// The layers' CPU forward called directly, in an arena of the same size as the scheduler's.
std::vector<float> direct_cpu(const SyntheticStack& stack, std::vector<float> x, int64_t n_tokens, int threads) {
  std::vector<float> ws(stack.layer(0).workspace_floats(n_tokens, Device::CPU));
  CpuOps ops;
  tbb::task_arena arena(threads);
  for (size_t l = 0; l < stack.size(); ++l) {
    std::vector<QuantMatrixView> views;
    for (const WeightTensor& t : stack.layer(l).weights()) views.push_back(t.view);
    arena.execute([&] {
      stack.layer(l).forward(views, x.data(), StepContext{n_tokens}, LayerRun{&ops, ws.data(), ws.size(), nullptr});
    });
  }
  return x;
}

}  // namespace

TEST_CASE("CPU placements through the scheduler match the float64 reference") {
  // Tolerance on the layers' increment: 3e-2 on the CPU's int8 path (T <= cpu::kCpuInt8MaxTokens), which rounds
  // activations to 8 bits per block of 32 (~0.4% per dot product) and compounds over layers; 1e-4 on the GEMM path
  // beyond it, which does not.
  for (const SyntheticStackConfig& config : {small_q4_0(3, test::test_seed(11)), small_q4_k(2, test::test_seed(12))}) {
    const SyntheticStack stack(config);
    SchedulerOptions options;
    options.max_tokens = cpu::kCpuInt8MaxTokens + 3;
    options.cpu_threads = 2;
    LayerScheduler scheduler(stack.layers(), all(stack.size(), Placement::CPU), options);
    for (int64_t n_tokens : {int64_t{1}, int64_t{5}, int64_t{13}, cpu::kCpuInt8MaxTokens + 3}) {
      CAPTURE(type_name(config.type));
      CAPTURE(n_tokens);
      const std::vector<float> x0 = stack.make_input(n_tokens, test::test_seed(100 + n_tokens));
      std::vector<float> got = x0;
      scheduler.step(got.data(), n_tokens);
      REQUIRE(test::all_finite(got));
      std::vector<float> want = x0;
      test::reference_forward(stack, want, n_tokens);
      // Measured: ~1e-2 on the int8 path (T = 1, 5, 13), ~5e-7 on the GEMM path; a wrong row or scale gives ~1.
      CHECK(test::increment_error(got, want, x0) < (n_tokens > cpu::kCpuInt8MaxTokens ? 1e-4 : 3e-2));
      // The scheduler adds nothing of its own: the same kernels called directly give the same bits.
      CHECK(test::bit_identical(got, direct_cpu(stack, x0, n_tokens, 2)));
      // And stepping again on the same input repeats them.
      std::vector<float> again = x0;
      scheduler.step(again.data(), n_tokens);
      CHECK(test::bit_identical(got, again));
      CHECK(scheduler.last_step().n_tokens == n_tokens);
      CHECK(scheduler.last_step().cpu_ms > 0);
      CHECK(scheduler.last_step().copy_bytes == 0);
    }
    const MemoryReport report = scheduler.memory();
    CHECK_FALSE(report.uses_device);
    CHECK(report.arena_bytes == 0);
    CHECK(report.host_bytes >= stack.layer(0).workspace_floats(13, Device::CPU) * sizeof(float));
  }
}

TEST_CASE("a step outside the scheduler's sizing is refused") {
  const SyntheticStack stack(small_q4_0(1, test::test_seed(3)));
  SchedulerOptions options;
  options.max_tokens = 4;
  LayerScheduler scheduler(stack.layers(), all(1, Placement::CPU), options);
  std::vector<float> x = stack.make_input(5, test::test_seed(1));
  CHECK(contains(error_of([&] { scheduler.step(x.data(), 5); }, ErrorCategory::INVALID_ARGUMENT), "max_tokens"));
  CHECK_THROWS_AS(scheduler.step(x.data(), 0), Error);
  CHECK_THROWS_AS(scheduler.step(nullptr, 1), Error);
}

TEST_CASE("inconsistent scheduler arguments are refused") {
  const SyntheticStack a(small_q4_0(2, test::test_seed(3)));
  const SyntheticStack b(small_q4_k(1, test::test_seed(4)));  // a different width
  SchedulerOptions options;
  CHECK(contains(
      error_of([&] { LayerScheduler(a.layers(), all(1, Placement::CPU), options); }, ErrorCategory::INVALID_ARGUMENT),
      "placements"));
  std::vector<const Layer*> mixed = a.layers();
  mixed.push_back(b.layers()[0]);
  CHECK(contains(
      error_of([&] { LayerScheduler(mixed, all(3, Placement::CPU), options); }, ErrorCategory::INVALID_ARGUMENT),
      "width"));
  CHECK_THROWS_AS(LayerScheduler({}, {}, options), Error);
  for (int depth : {0, 5}) {
    SchedulerOptions bad = options;
    bad.prefetch_depth = depth;
    CHECK(contains(
        error_of([&] { LayerScheduler(a.layers(), all(2, Placement::CPU), bad); }, ErrorCategory::INVALID_ARGUMENT),
        "prefetch depth"));
  }
  SchedulerOptions no_tokens = options;
  no_tokens.max_tokens = 0;
  CHECK_THROWS_AS(LayerScheduler(a.layers(), all(2, Placement::CPU), no_tokens), Error);
}

TEST_CASE("without a GPU, GPU placements are refused saying why") {
  if (gpu_available()) return;  // covered by test_offload_gpu there
  const SyntheticStack stack(small_q4_0(3, test::test_seed(5)));
  SchedulerOptions options;
  options.vram_budget = uint64_t{8} << 30;
  for (Placement p : {Placement::RESIDENT, Placement::STREAMED, Placement::PHASED}) {
    std::vector<Placement> placements = all(3, Placement::CPU);
    placements[1] = p;
    const std::string message =
        error_of([&] { LayerScheduler(stack.layers(), placements, options); }, ErrorCategory::UNSUPPORTED);
    CHECK(contains(message, "q40.1"));
    CHECK(contains(message, std::string(placement_name(p))));
    CHECK(contains(message, "only CPU placement"));
    CHECK(contains(message, cuda_backend_built() ? "device" : "FERRY_CUDA"));
  }
  CHECK(contains(gpu_unavailable_reason(), cuda_backend_built() ? "device" : "CUDA"));
  // The plan input of an all-CPU stack needs no device at all.
  const MemoryPlanInput input = scheduler_memory_input(stack.layers(), all(3, Placement::CPU), options);
  CHECK_FALSE(compute_memory_plan(input, options.vram_budget).uses_device);
}

TEST_CASE("the host pool holds each streamed layer contiguously, tensors aligned") {
  const SyntheticStack stack(small_q4_k(3, test::test_seed(21)));
  std::vector<std::span<const WeightTensor>> layers;
  for (size_t l = 0; l < stack.size(); ++l) layers.push_back(stack.layer(l).weights());
  std::vector<std::string> warnings;
  const PinnedHostPool pool(layers, HostPoolOptions{false, [&](const std::string& w) { warnings.push_back(w); }});
  REQUIRE(pool.size() == 3);
  CHECK(warnings.empty());
  CHECK(pool.fallback_reason().empty());
  if (!gpu_available()) CHECK_FALSE(pool.pinned());  // ordinary aligned memory
  for (size_t l = 0; l < pool.size(); ++l) {
    const auto span = pool.span(l);
    const LayerLayout& layout = pool.layout(l);
    CHECK(reinterpret_cast<uintptr_t>(span.data()) % 4096 == 0);
    CHECK(span.size() == layout.bytes);
    uint64_t end = 0;
    for (size_t t = 0; t < layers[l].size(); ++t) {
      const QuantMatrixView& v = layers[l][t].view;
      const uint64_t bytes = tensor_bytes(v);
      CHECK(layout.offsets[t] % kArenaAlignment == 0);
      CHECK(layout.offsets[t] >= end);
      CHECK(std::memcmp(span.data() + layout.offsets[t], v.data, bytes) == 0);
      for (uint64_t p = end; p < layout.offsets[t]; ++p) CHECK(span[p] == std::byte{0});  // padding is zeroed
      end = layout.offsets[t] + bytes;
    }
  }
  CHECK_THROWS_AS(pool.span(3), Error);
}

TEST_CASE("when pinning fails the pool falls back to pageable memory and names the locked-memory limit") {
  const SyntheticStack stack(small_q4_0(2, test::test_seed(22)));
  std::vector<std::span<const WeightTensor>> layers = {stack.layer(0).weights(), stack.layer(1).weights()};
  std::vector<std::string> warnings;
  const PinnedHostPool pool(layers, HostPoolOptions{true, [&](const std::string& w) { warnings.push_back(w); }});
  CHECK_FALSE(pool.pinned());
  CHECK(contains(pool.fallback_reason(), "simulate"));
  REQUIRE(warnings.size() == 1);
  CHECK(contains(warnings[0], "RLIMIT_MEMLOCK"));
  CHECK(contains(warnings[0], "pageable"));
  CHECK(contains(warnings[0], "ulimit -l"));
  for (size_t l = 0; l < 2; ++l)
    for (size_t t = 0; t < layers[l].size(); ++t)
      CHECK(std::memcmp(pool.span(l).data() + pool.layout(l).offsets[t], layers[l][t].view.data,
                        tensor_bytes(layers[l][t].view)) == 0);
}

TEST_CASE("the trace is valid Chrome trace JSON with one span per CPU layer and step") {
  const test::TempDir dir;
  const fs::path path = dir.path() / "trace.json";
  const SyntheticStack stack(small_q4_0(3, test::test_seed(31)));
  {
    SchedulerOptions options;
    options.max_tokens = 9;
    options.trace_path = path;
    LayerScheduler scheduler(stack.layers(), all(3, Placement::CPU), options);
    for (int64_t n : {9, 2, 9}) {
      std::vector<float> x = stack.make_input(n, test::test_seed(7));
      scheduler.step(x.data(), n);
    }
    CHECK(scheduler.trace().spans().size() == 9);
  }  // the destructor writes the trace
  REQUIRE(fs::exists(path));
  for (const auto& entry : fs::directory_iterator(dir.path())) CHECK(entry.path() == path);  // no temporary left
  std::ifstream in(path);
  const nlohmann::json doc = nlohmann::json::parse(in);  // throws on malformed JSON
  REQUIRE(doc.contains("traceEvents"));
  REQUIRE(doc["traceEvents"].is_array());
  int complete = 0, names = 0;
  double last_end = -1;
  std::vector<int> per_step(3, 0);
  for (const auto& e : doc["traceEvents"]) {
    REQUIRE(e.contains("ph"));
    REQUIRE(e.contains("pid"));
    REQUIRE(e.contains("tid"));
    if (e["ph"] == "M") {
      names += e["name"] == "thread_name";
      continue;
    }
    REQUIRE(e["ph"] == "X");
    ++complete;
    CHECK(e["name"].get<std::string>().rfind("cpu q40.", 0) == 0);
    CHECK(e["cat"] == "CPU pool");
    const double ts = e["ts"].get<double>(), dur = e["dur"].get<double>();
    CHECK(ts >= 0);
    CHECK(dur > 0);
    CHECK(ts >= last_end);  // one CPU track: spans in order, never overlapping
    last_end = ts + dur;
    const int step = e["args"]["step"].get<int>();
    REQUIRE((step >= 0 && step < 3));
    ++per_step[static_cast<size_t>(step)];
    CHECK(e["args"]["layer"].get<int>() >= 0);
  }
  CHECK(complete == 9);
  CHECK(names == 4);
  CHECK(per_step == std::vector<int>{3, 3, 3});
}

TEST_CASE("a trace that cannot be written is reported with its path") {
  TraceRecorder trace;
  trace.add({"x", TraceTrack::CPU, 1, 2, 0, 0, 0});
  const fs::path path = "/nonexistent-ferry-dir/trace.json";
  const std::string message = error_of([&] { trace.write_chrome_json(path); }, ErrorCategory::IO);
  CHECK(contains(message, "/nonexistent-ferry-dir/trace.json"));
}

TEST_CASE("1000 CPU steps keep host memory flat") {
  const SyntheticStack stack(SyntheticStackConfig{"flat", 2, 64, 96, GgmlType::Q4_0, test::test_seed(41), 1e-5f});
  SchedulerOptions options;
  options.max_tokens = 3;
  options.cpu_threads = 2;
  LayerScheduler scheduler(stack.layers(), all(2, Placement::CPU), options);
  const std::vector<float> input = stack.make_input(3, test::test_seed(9));
  std::vector<float> x = input, first;
  for (int i = 0; i < 20; ++i) {  // warm-up: oneTBB's workers and the allocator's caches settle
    x = input;
    scheduler.step(x.data(), 3);
  }
  first = x;
  const MemoryReport before = scheduler.memory();
  [[maybe_unused]] const uint64_t rss_before = test::peak_rss_bytes();  // unused under ASan
  for (int i = 0; i < 1000; ++i) {
    std::memcpy(x.data(), input.data(), input.size() * sizeof(float));
    scheduler.step(x.data(), 1 + i % 3);
    if (i % 3 == 2) REQUIRE(test::bit_identical(x, first));
  }
  const MemoryReport after = scheduler.memory();
  CHECK(after.host_high_water == before.host_high_water);
  CHECK(after.host_bytes == before.host_bytes);
#if !defined(FERRY_TEST_ASAN)  // ASan's quarantine keeps freed memory resident on purpose
  // 256 KiB of slack: page-granular noise from the C library, not growth per step (which would be >= 1000 x).
  CHECK(test::peak_rss_bytes() <= rss_before + 256 * 1024);
#endif
}
