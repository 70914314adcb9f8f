#include "bench_runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include "bench_arms.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry_build_info.hpp"
#ifdef FERRY_HAVE_CUDA
#include "ferry/offload/device_memory.hpp"
#endif

namespace ferry::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  return "unknown";
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// The process's device memory (NVML), where it can be read.
std::optional<uint64_t> process_device_now() {
#ifdef FERRY_HAVE_CUDA
  if (gpu_available()) return process_device_bytes();
#endif
  return std::nullopt;
}

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// The prompt and generation tokens (random ids: only the forward pass is timed) and the logits row.
struct Workload {
  std::vector<int32_t> prompt, gen;
  std::vector<float> logits;

  Workload(const BenchModel& model, const BenchRequest& request) : logits(static_cast<size_t>(model.n_vocab)) {
    std::mt19937_64 rng(kBenchTokenSeed);
    std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(model.n_vocab - 1));
    for (int64_t i = 0; i < request.prompt; ++i) prompt.push_back(id(rng));
    for (int64_t i = 0; i < request.gen; ++i) gen.push_back(id(rng));
  }
};

LlamaRunnerOptions runner_options(const BenchRequest& request, const BenchArmSpec& spec) {
  LlamaRunnerOptions o;
  o.n_ctx = std::max<int64_t>({request.prompt, request.gen, 1});
  o.max_tokens = std::min(kBenchMaxStepTokens, o.n_ctx);
  o.policy = spec.policy;
  o.vram_budget = spec.vram;
  o.prefetch_depth = request.prefetch;
  o.link_gbps = request.link_gbps;
  o.planned_prompt_tokens = std::max<int64_t>(request.prompt, 1);  // the workload `auto` plans for: this bench's
  o.planned_generated_tokens = request.gen;
  o.overrides = request.overrides;
  o.plan_file = request.plan_file;
  return o;
}

// A llama arm: the tests are bench_tests(request) in order, pp (if asked for) before tg.
class LlamaArm final : public BenchArmRunner {
 public:
  LlamaArm(const LoadedModel& model, const BenchRequest& request, const BenchArmSpec& spec, Workload& w,
           const std::string& trace_path)
      : m_w(w) {
    LlamaRunnerOptions options = runner_options(request, spec);
    options.trace_path = trace_path;
    m_runner = std::make_unique<LlamaRunner>(model.config, model.weights, options);
    for (const BenchTest& t : bench_tests(request)) m_kinds.push_back(t.kind);
  }

  double sample(size_t test) override {
    const double s = m_kinds[test] == TestKind::PREFILL ? time_prefill() : time_generation(m_w.gen.size());
    m_runner->scheduler().wait_idle();
    return s;
  }
  void trace_phase(size_t test) override {
    if (m_kinds[test] == TestKind::PREFILL)
      time_prefill();
    else
      time_generation(1);
    m_runner->scheduler().wait_idle();
  }
  const LayerScheduler& scheduler() const override { return m_runner->scheduler(); }
  MemoryReport memory() const override { return m_runner->scheduler().memory(); }
  const std::vector<Placement>& placements() const override { return m_runner->placements(); }
  std::string plan_text() const override {
    return m_runner->placement_summary() + (m_runner->plan_note().empty() ? "" : " (" + m_runner->plan_note() + ")");
  }
  int64_t step_tokens() const override { return m_runner->max_step_tokens(); }

 private:
  double time_prefill() {
    const Clock::time_point t0 = Clock::now();
    m_runner->forward(m_w.prompt, 0, m_w.logits, false);
    return seconds_since(t0);
  }
  double time_generation(size_t n) {
    const Clock::time_point t0 = Clock::now();
    for (size_t i = 0; i < n; ++i) m_runner->forward({&m_w.gen[i], 1}, static_cast<int64_t>(i), m_w.logits, false);
    return seconds_since(t0);
  }

  Workload& m_w;
  std::unique_ptr<LlamaRunner> m_runner;
  std::vector<TestKind> m_kinds;
};

// One arm held: its runner, loaded, described and warmed up.
struct LiveArm {
  BenchArm* arm = nullptr;
  std::unique_ptr<BenchArmRunner> runner;
};

void warm_up(BenchArmRunner& runner, size_t n_tests) {
  for (int i = 0; i < kBenchWarmups; ++i)
    for (size_t t = 0; t < n_tests; ++t) runner.trace_phase(t);
}

// Plans and loads the arm, fills in its plan and memory; null (and the arm REFUSED) when its plan does not fit.
std::unique_ptr<BenchArmRunner> open_arm(const OpenBenchArm& open, const BenchRequest& request, BenchArm& arm,
                                         const std::string& trace_path = {}) {
  const std::optional<uint64_t> before = process_device_now();
  std::unique_ptr<BenchArmRunner> runner;
  try {
    runner = open(arm.spec, trace_path);
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::BUDGET) throw;
    arm.status = ArmStatus::REFUSED;
    arm.reason = first_line(e.what());
    return nullptr;
  }
  warm_up(*runner, bench_tests(request).size());
  arm.plan = runner->plan_text();
  arm.step_tokens = runner->step_tokens();
  arm.resident = arm.streamed = arm.cpu = arm.phased = 0;
  for (Placement p : runner->placements())
    (p == Placement::RESIDENT   ? arm.resident
     : p == Placement::STREAMED ? arm.streamed
     : p == Placement::PHASED   ? arm.phased
                                : arm.cpu)++;
  const MemoryReport m = runner->memory();
  arm.uses_device = m.uses_device;
  arm.context_bytes = m.uses_device ? m.plan[MemoryCategory::CONTEXT] : 0;
  arm.arena_bytes = m.arena_bytes;
  arm.arena_high_water = m.arena_high_water;
  arm.device_peak_bytes = m.uses_device ? arm.context_bytes + m.arena_high_water : 0;
  arm.host_bytes = m.host_bytes;
  const std::optional<uint64_t> after = process_device_now();
  if (m.uses_device && before && after && *after >= *before)
    arm.process_device_bytes = *after - *before + arm.context_bytes;
  arm.link = link_note(request.link_gbps, runner->placements());
  arm.link_paced = request.link_gbps > 0 && arm.streamed + arm.phased > 0 && gpu_available();
  return runner;
}

// One sample of each test of the arm; `taken` counts the bench's samples.
void measure_once(LiveArm& live, int64_t& taken) {
  for (size_t t = 0; t < live.arm->tests.size(); ++t) {
    live.arm->tests[t].seconds.push_back(live.runner->sample(t));
    live.arm->tests[t].sequence.push_back(taken++);
  }
}

std::string arm_label(const BenchArm& arm) {
  return arm.spec.vram_text + " " + std::string(policy_name(arm.spec.policy));
}

// Whether every arm can be held at once: the budgets of the arms that use the device must fit its free memory
// together (each budget counts the context again: an overestimate, so never too many).
bool fits_together(const std::vector<BenchArm>& arms, std::string& note) {
#ifdef FERRY_HAVE_CUDA
  if (!gpu_available()) return true;
  uint64_t total = 0;
  for (const BenchArm& a : arms)
    if (a.status == ArmStatus::OK && a.spec.policy != Policy::CPU_ALL) total += a.spec.vram;
  const uint64_t free_now = device_free_bytes();
  if (total <= free_now) return true;
  note = "the arms' budgets together (" + format_size(total) + ") exceed the device's free memory (" +
         format_size(free_now) + "), so each arm was held alone and ran its repetitions in a row";
  return false;
#else
  (void)arms;
  (void)note;
  return true;
#endif
}

void record_timeline(const OpenBenchArm& open, BenchReport& report, const BenchLog& log) {
  const auto first =
      std::find_if(report.arms.begin(), report.arms.end(), [](const BenchArm& a) { return a.status == ArmStatus::OK; });
  if (first == report.arms.end()) {
    log("no timeline: no arm ran");
    return;
  }
  const std::vector<BenchTest> tests = bench_tests(report.request);
  std::string phases;
  for (const BenchTest& t : tests) phases += (phases.empty() ? "" : ", ") + t.name;
  log("timeline: tracing one phase of each test (" + phases + ") of " + arm_label(*first));
  BenchArm scratch = *first;  // open_arm fills in a plan and figures; the measured arm keeps its own
  std::unique_ptr<BenchArmRunner> runner = open_arm(open, report.request, scratch, report.request.trace_path);
  if (!runner) fail(ErrorCategory::INTERNAL, "bench: the timeline's arm was refused after it had run");
  BenchTimeline timeline;
  timeline.arm = static_cast<size_t>(first - report.arms.begin());
  const LayerScheduler& s = runner->scheduler();
  for (size_t t = 0; t < tests.size(); ++t) {
    const int64_t from = s.last_step().step + 1;
    runner->trace_phase(t);
    std::vector<TraceSpan> spans;
    for (const TraceSpan& span : s.trace().spans())
      if (span.step >= from && span.step <= s.last_step().step) spans.push_back(span);
    timeline.phases.push_back(std::move(spans));
  }
  report.timeline = std::move(timeline);
}

}  // namespace

SampleStats sample_stats(const std::vector<double>& samples) {
  SampleStats s;
  if (samples.empty()) return s;
  for (double v : samples) s.mean += v;
  s.mean /= static_cast<double>(samples.size());
  std::vector<double> sorted = samples;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  s.median = sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  if (samples.size() < 2) return s;
  double squares = 0;
  for (double v : samples) squares += (v - s.mean) * (v - s.mean);
  s.stddev = std::sqrt(squares / static_cast<double>(samples.size() - 1));
  return s;
}

std::vector<double> BenchTest::tokens_per_second() const {
  std::vector<double> tps;
  for (double s : seconds) tps.push_back(s > 0 ? static_cast<double>(tokens) / s : 0.0);
  return tps;
}

std::vector<BenchTest> bench_tests(const BenchRequest& request) {
  std::vector<BenchTest> tests;
  if (request.arch == BenchArch::FLUX) {
    tests.push_back({"step", TestKind::STEP, request.image_tokens() + request.text_tokens, {}, {}});
    return tests;
  }
  if (request.prompt > 0)
    tests.push_back({"pp" + std::to_string(request.prompt), TestKind::PREFILL, request.prompt, {}, {}});
  if (request.gen > 0) tests.push_back({"tg" + std::to_string(request.gen), TestKind::GENERATION, request.gen, {}, {}});
  return tests;
}

std::string_view bench_arch_name(BenchArch arch) noexcept { return arch == BenchArch::FLUX ? "flux" : "llama"; }

std::string_view test_kind_name(TestKind kind) noexcept {
  switch (kind) {
    case TestKind::PREFILL:
      return "pp";
    case TestKind::GENERATION:
      return "tg";
    case TestKind::STEP:
      return "step";
  }
  return "?";
}

std::string_view arm_status_name(ArmStatus status) noexcept {
  switch (status) {
    case ArmStatus::OK:
      return "ok";
    case ArmStatus::SKIPPED:
      return "skipped";
    case ArmStatus::REFUSED:
      return "refused";
  }
  return "?";
}

BenchEnvironment bench_environment() {
  BenchEnvironment env;
  env.cuda_backend = cuda_backend_built();
  env.gpu = gpu_available();
  if (env.gpu) {
    (void)gpu_context_overhead_bytes();  // measured before anything else creates the context
    env.device = gpu_name();
#ifdef FERRY_HAVE_CUDA
    env.driver = driver_version();
#endif
  } else {
    env.no_gpu_reason = gpu_unavailable_reason();
  }
  env.cpu_model = cpu_model();
  env.hardware_threads = std::thread::hardware_concurrency();
  env.git_sha = kBuildGitSha;
  env.git_dirty = kBuildGitDirty;
  env.version = kFerryVersion;
  env.started_at = utc_now();
  // Read once here, before any arm: a bad value is refused before minutes of loading.
  env.decode_graphs = resolve_decode_graphs(SchedulerOptions::DecodeGraphs::DEFAULT);
  env.activations_by_kernel = resolve_activation_upload(SchedulerOptions::ActivationUpload::DEFAULT) ==
                              SchedulerOptions::ActivationUpload::KERNEL;
  env.fused_ops = resolve_fused_ops(SchedulerOptions::FusedOps::DEFAULT);
  env.flash_attention = device_sizing::attention_flash_allowed();
  return env;
}

void run_bench_arms(BenchReport& report, const OpenBenchArm& open, const BenchLog& log) {
  const BenchRequest& request = report.request;
  for (const BenchArmSpec& spec : request.arms) {
    BenchArm arm;
    arm.spec = spec;
    if (spec.policy != Policy::CPU_ALL && !report.env.gpu) {
      arm.status = ArmStatus::SKIPPED;
      arm.reason = "no GPU: " + report.env.no_gpu_reason;
    }
    report.arms.push_back(std::move(arm));
  }
  if (request.sequential) report.order_note = "--sequential: each arm was held alone and ran its repetitions in a row";
  report.interleaved = !request.sequential && fits_together(report.arms, report.order_note);
  int64_t taken = 0;

  auto open_live = [&](BenchArm& arm) -> LiveArm {
    log("loading " + arm_label(arm));
    LiveArm live{&arm, open_arm(open, request, arm)};
    if (live.runner) {
      arm.tests = bench_tests(request);
      log("  " + arm.plan + (arm.link.empty() ? "" : "; link: " + arm.link));
    } else {
      log("  refused: " + arm.reason);
    }
    return live;
  };
  if (report.interleaved) {
    std::vector<LiveArm> live;
    for (BenchArm& arm : report.arms)
      if (arm.status == ArmStatus::OK)
        if (LiveArm a = open_live(arm); a.runner) live.push_back(std::move(a));
    for (int r = 0; r < request.reps; ++r) {
      log("repetition " + std::to_string(r + 1) + " of " + std::to_string(request.reps));
      for (size_t j = 0; j < live.size(); ++j) measure_once(live[(j + static_cast<size_t>(r)) % live.size()], taken);
    }
  } else {
    for (BenchArm& arm : report.arms) {
      if (arm.status != ArmStatus::OK) continue;
      LiveArm live = open_live(arm);
      for (int r = 0; r < request.reps && live.runner; ++r) measure_once(live, taken);
    }
  }
  if (request.timeline) record_timeline(open, report, log);
}

BenchReport run_bench(const LoadedModel& model, const BenchRequest& request, BenchEnvironment env,
                      const BenchLog& log) {
  BenchReport report;
  report.env = std::move(env);
  report.request = request;
  report.model.path = model.path;
  report.model.name = std::filesystem::path(model.path).filename().string();
  report.model.arch = BenchArch::LLAMA;
  report.model.n_layer = model.config.n_layer;
  report.model.n_embd = model.config.n_embd;
  report.model.n_vocab = model.config.n_vocab;
  report.model.n_ctx_train = model.config.n_ctx_train;
  report.model.file_bytes = model.file.file_size();
  Workload w(report.model, request);
  run_bench_arms(
      report,
      [&](const BenchArmSpec& spec, const std::string& trace_path) -> std::unique_ptr<BenchArmRunner> {
        return std::make_unique<LlamaArm>(model, request, spec, w, trace_path);
      },
      log);
  return report;
}

}  // namespace ferry::cli
