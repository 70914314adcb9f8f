// `ferry bench`'s measurement. Every (budget, policy) arm of a model is planned and loaded once and warmed up (one
// sample of each test; of a llama model one prefill and one decode step); then REPS repetitions of each test, in the
// manner of llama-bench:
//   pp<N>  llama prefill: the N prompt tokens in one forward call (steps of at most 512 tokens) from an empty cache;
//   tg<N>  llama generation: N single-token forward calls at positions 0..N-1;
//   step   Flux: one denoising step (one model call over the image and text tokens and its Euler update), reported
//          in seconds per step (a Flux step is long and its throughput in tokens means little to a user).
// Tokens are random ids, Flux inputs N(0, 1) values, from a fixed seed (no sampling: only the forward pass is timed),
// each sample timed by the host's steady clock around calls that return only once the device is synchronized.
//
// Arms alternate: repetition r runs every arm once, starting from arm r, so drift on the machine (clocks, heat, other
// work) spreads over all arms instead of landing on one. That needs every arm held at once; when their budgets
// together exceed the device's free memory (or with --sequential) each arm is held alone and runs its repetitions in
// a row, and the report says so. After each sample the arm's copies issued ahead are waited for, so no arm's streaming
// overlaps another's timing.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/offload/trace.hpp"
#include "ferry/policies/planner.hpp"
#include "model_command.hpp"

namespace ferry::cli {

struct BenchArmSpec {
  std::string vram_text;  // as given ("8GiB")
  uint64_t vram = 0;
  Policy policy = Policy::RESIDENT_STREAM;
};

// The model family a bench runs: general.architecture of the file (llama and its relatives, or flux).
enum class BenchArch { LLAMA, FLUX };
std::string_view bench_arch_name(BenchArch arch) noexcept;  // "llama", "flux"

struct BenchRequest {
  BenchArch arch = BenchArch::LLAMA;
  std::vector<BenchArmSpec> arms;             // every budget with every policy, budgets outer, in the order given
  int64_t prompt = 512;                       // llama: tokens of the pp test; 0: no pp test
  int64_t gen = 128;                          // llama: tokens of the tg test; 0: no tg test
  int64_t image_width = 0, image_height = 0;  // flux: the image in pixels (multiples of 16)
  int64_t text_tokens = 0;                    // flux: text tokens of each step
  int64_t image_tokens() const noexcept { return (image_width / 16) * (image_height / 16); }
  int reps = 5;
  int prefetch = 1;
  double link_gbps = 0;  // > 0: streamed copies paced to this rate (simulated link)
  bool sequential = false;
  bool timeline = false;   // trace one phase of each test (a prefill, a decode step, a Flux step) of the first arm
                           // that ran, after the measurements
  std::string trace_path;  // with timeline: where that run's Chrome trace is written
  std::vector<PlacementOverride> overrides;  // --resident/--stream/--cpu: forced layers, in every arm
  std::optional<PlanFile> plan_file;         // --plan: every arm runs the file's placements (at each budget)
};

inline constexpr uint64_t kBenchTokenSeed = 20261204;  // the llama tokens' and the Flux inputs' seed
inline constexpr float kBenchFluxGuidance = 3.5f;      // flux-step's default
inline constexpr int kBenchWarmups = 1;
inline constexpr int64_t kBenchMaxStepTokens = 512;  // tokens per scheduler step, as `ferry run` uses
inline constexpr std::string_view kBenchClock =
    "std::chrono::steady_clock (host), around forward calls that return after the device is synchronized";

// Mean and sample standard deviation (n - 1; 0 for fewer than two samples), and the median.
struct SampleStats {
  double mean = 0;
  double stddev = 0;
  double median = 0;
};
SampleStats sample_stats(const std::vector<double>& samples);

enum class TestKind { PREFILL, GENERATION, STEP };
std::string_view test_kind_name(TestKind kind) noexcept;  // "pp", "tg", "step"

struct BenchTest {
  std::string name;  // "pp512", "tg128", "step"
  TestKind kind = TestKind::PREFILL;
  int64_t tokens = 0;             // pp/tg: the test's tokens; step: the tokens of one step (image + text)
  std::vector<double> seconds;    // one per repetition, in the order run
  std::vector<int64_t> sequence;  // when each was taken: its place among all samples of the bench (0, 1, ...)
  std::vector<double> tokens_per_second() const;
  SampleStats tps() const { return sample_stats(tokens_per_second()); }  // what llama-bench reports
  SampleStats time() const { return sample_stats(seconds); }
};

// The tests a request asks for, with no samples yet: pp<prompt> (if prompt > 0), then tg<gen> (if gen > 0); of a Flux
// request, step.
std::vector<BenchTest> bench_tests(const BenchRequest& request);

enum class ArmStatus { OK, SKIPPED, REFUSED };
std::string_view arm_status_name(ArmStatus status) noexcept;  // "ok", "skipped", "refused"

struct BenchArm {
  BenchArmSpec spec;
  ArmStatus status = ArmStatus::OK;
  std::string reason;       // SKIPPED: why (no GPU); REFUSED: the plan's refusal (its first line)
  std::string plan;         // "4 blocks: 2 resident, 2 streamed; output head: resident"
  int64_t step_tokens = 0;  // tokens per scheduler step it ran with (0 unless OK)
  int resident = 0, streamed = 0, cpu = 0, phased = 0;  // layers (blocks and the head) by placement
  bool uses_device = false;
  uint64_t context_bytes = 0;                    // the CUDA context's share, charged to the budget
  uint64_t arena_bytes = 0;                      // the one device reservation
  uint64_t arena_high_water = 0;                 // the most of it ever used
  uint64_t device_peak_bytes = 0;                // context + arena high-water: what ferry held on the device at most
  std::optional<uint64_t> process_device_bytes;  // NVML: the device memory this arm added to the process + context
  uint64_t host_bytes = 0;                       // host memory the scheduler holds
  std::string link;                              // link_note(): what --link-gbps did here; "" without it
  bool link_paced = false;                       // its copies were paced: its figures are simulated
  std::vector<BenchTest> tests;                  // bench_tests(request), sampled; empty unless OK
};

struct BenchTimeline {
  size_t arm = 0;  // index into BenchReport::arms
  // One phase per test of bench_tests(request), in its order: the spans of one prefill, one decode step (of tg), one
  // Flux step, on the trace's clock.
  std::vector<std::vector<TraceSpan>> phases;
};

struct BenchModel {
  std::string path, name;  // name: the file's name
  BenchArch arch = BenchArch::LLAMA;
  int64_t n_layer = 0;                   // blocks (flux: double + single)
  int64_t n_embd = 0;                    // width (flux: hidden)
  int64_t n_vocab = 0, n_ctx_train = 0;  // llama only
  int64_t n_double = 0, n_single = 0;    // flux only
  uint64_t file_bytes = 0;
};

struct BenchEnvironment {
  std::string device = "cpu";  // the GPU's name, or "cpu" without one
  bool gpu = false;
  std::string no_gpu_reason;  // empty with a GPU
  std::string driver;         // empty without a GPU or when it cannot be read
  bool cuda_backend = false;
  std::string cpu_model;
  unsigned hardware_threads = 0;
  std::string git_sha;  // "unknown" without git at configure time
  bool git_dirty = false;
  std::string version;
  std::string started_at;  // UTC, ISO 8601
  // The GPU engine's settings from the environment (resolve_decode_graphs, resolve_activation_upload,
  // resolve_fused_ops, FERRY_ATTENTION_PATH), reported so that runs with different ones are not compared unawares.
  bool decode_graphs = true;
  bool activations_by_kernel = false;
  bool fused_ops = true;
  bool flash_attention = true;  // FERRY_ATTENTION_PATH (device_sizing::attention_flash_allowed)
};

struct BenchReport {
  BenchEnvironment env;
  BenchModel model;
  BenchRequest request;
  bool interleaved = true;
  std::string order_note;  // why the arms ran one after another, when they did
  std::vector<BenchArm> arms;
  std::optional<BenchTimeline> timeline;
};

using BenchLog = std::function<void(const std::string&)>;

// This machine and build; call before anything else touches the GPU (it measures the context's overhead first).
BenchEnvironment bench_environment();
// Runs every arm; an arm whose policy needs a GPU is SKIPPED without one, one whose plan does not fit its budget is
// REFUSED; any other error ends the bench.
BenchReport run_bench(const LoadedModel& model, const BenchRequest& request, BenchEnvironment env, const BenchLog& log);
// The same for a Flux file (bench_flux.cpp): its step test on inputs generated from kBenchTokenSeed.
BenchReport run_flux_bench(const std::string& path, const BenchRequest& request, BenchEnvironment env,
                           const BenchLog& log);

}  // namespace ferry::cli
