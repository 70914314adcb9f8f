// `ferry bench`'s shared loop (run_bench_arms) and its three forms on a Flux report, with a stand-in arm runner: the
// paths a machine without a GPU cannot reach through the command (an arm refused by its plan: the GPU arms are
// skipped there before they are planned), with figures known in advance so every form can be checked against them.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_arms.hpp"
#include "bench_output.hpp"
#include "bench_runner.hpp"
#include "ferry/error.hpp"

using namespace ferry;
using namespace ferry::cli;

namespace {

// Samples of `base`, `base` + 0.01, `base` + 0.02, ... seconds; a plan and memory as if on a GPU.
class FakeArm final : public BenchArmRunner {
 public:
  explicit FakeArm(double base) : m_base(base), m_placements(6, Placement::RESIDENT) {}
  double sample(size_t) override { return m_base + 0.01 * static_cast<double>(m_calls++); }
  void trace_phase(size_t) override { ++m_calls; }
  const LayerScheduler& scheduler() const override { fail(ErrorCategory::INTERNAL, "no scheduler: no timeline here"); }
  MemoryReport memory() const override {
    MemoryReport m;
    m.uses_device = true;
    m.arena_bytes = 4 << 20;
    m.arena_high_water = 3 << 20;
    return m;
  }
  const std::vector<Placement>& placements() const override { return m_placements; }
  std::string plan_text() const override { return "img_in resident; 2 double + 2 single blocks: 4 resident"; }
  int64_t step_tokens() const override { return 128 / 16 * 64 / 16 + 16; }  // the report's image and text tokens

 private:
  double m_base;
  int m_calls = 0;
  std::vector<Placement> m_placements;
};

BenchReport flux_report() {
  BenchReport report;
  report.env.gpu = true;  // the loop plans GPU arms only with one
  report.env.device = "Stand-in GPU";
  report.env.git_sha = "0123456789abcdef";
  report.env.started_at = "2026-12-05T00:00:00Z";
  BenchRequest& q = report.request;
  q.arch = BenchArch::FLUX;
  q.image_width = 128;
  q.image_height = 64;
  q.text_tokens = 16;
  q.reps = 3;
  q.arms = {{"1KiB", 1024, Policy::RESIDENT_STREAM}, {"1GiB", uint64_t{1} << 30, Policy::RESIDENT_STREAM}};
  report.model = {"m.gguf", "m.gguf", BenchArch::FLUX, 4, 256, 0, 0, 2, 2, 1000};
  return report;
}

const OpenBenchArm kOpen = [](const BenchArmSpec& spec, const std::string&) -> std::unique_ptr<BenchArmRunner> {
  if (spec.vram < (uint64_t{1} << 20))
    fail(ErrorCategory::BUDGET, "flux: the budget of " + spec.vram_text +
                                    " is too small: the smallest plan needs 5 MiB\n  breakdown: context 1 MiB, ...");
  return std::make_unique<FakeArm>(0.25);
};

}  // namespace

TEST_CASE("bench of a Flux report: a refused arm is a row with its reason in every form; the ran arm's figures agree") {
  BenchReport report = flux_report();
  std::vector<std::string> log;
  run_bench_arms(report, kOpen, [&](const std::string& line) { log.push_back(line); });
  REQUIRE(report.arms.size() == 2);
  const BenchArm& refused = report.arms[0];
  const BenchArm& ran = report.arms[1];
  CHECK(refused.status == ArmStatus::REFUSED);
  CHECK(refused.reason == "flux: the budget of 1KiB is too small: the smallest plan needs 5 MiB");  // its first line
  CHECK(refused.tests.empty());
  REQUIRE(ran.status == ArmStatus::OK);
  REQUIRE(ran.tests.size() == 1);
  const BenchTest& step = ran.tests[0];
  CHECK(step.name == "step");
  CHECK(step.kind == TestKind::STEP);
  CHECK(step.tokens == 8 * 4 + 16);
  // One warm-up sample, then three: 0.26, 0.27, 0.28 s.
  REQUIRE(step.seconds.size() == 3);
  CHECK(step.seconds[0] == doctest::Approx(0.26));
  CHECK(step.seconds[2] == doctest::Approx(0.28));
  CHECK(ran.device_peak_bytes == 3 << 20);

  // Markdown: the refused row carries the reason; the ran row the mean ± sample stddev in s/step (0.2700 ± 0.0100).
  const std::string md = bench_markdown(report);
  CHECK_MESSAGE(md.find("| test | s/step |") != std::string::npos, md);
  CHECK_MESSAGE(md.find("| 1KiB | resident-stream | refused: flux: the budget of 1KiB is too small: the smallest plan "
                        "needs 5 MiB | |") != std::string::npos,
                md);
  CHECK_MESSAGE(md.find("| step | 0.2700 ± 0.0100 |") != std::string::npos, md);
  CHECK_MESSAGE(md.find("3.00 MiB / 1.00 GiB") != std::string::npos, md);

  // JSON: the same arms, the refused one with its reason and no tests, the ran one's step in seconds.
  const nlohmann::json j = nlohmann::json::parse(dump_json(bench_json(report)));
  CHECK(j["architecture"] == "flux");
  CHECK(j["arms"][0]["status"] == "refused");
  CHECK(j["arms"][0]["reason"] == refused.reason);
  CHECK(j["arms"][0]["tests"].empty());
  const nlohmann::json& t = j["arms"][1]["tests"][0];
  CHECK(t["unit"] == "s/step");
  CHECK(t["mean_s"].get<double>() == doctest::Approx(0.27));
  CHECK(t["stddev_s"].get<double>() == doctest::Approx(0.01));
  CHECK(t["median_s"].get<double>() == doctest::Approx(0.27));
  CHECK(t["samples_sequence"] == nlohmann::json::array({0, 1, 2}));

  // CSV: a record per arm; the refused one with its reason and no figures.
  const std::string csv = bench_csv(report);
  CHECK_MESSAGE(
      csv.find("m.gguf,Stand-in GPU,1KiB,1024,resident-stream,refused,step,,,,,,,,1024,,,,,") != std::string::npos,
      csv);
  CHECK_MESSAGE(csv.find(",ok,step,48,3,,,0.270000,0.010000,3145728,1073741824,6,0,0,0,,") != std::string::npos, csv);
  CHECK(csv.find(",s/step\n") != std::string::npos);
}
