// What `ferry bench`'s loop (bench_runner.cpp) drives, whatever the model family: an arm's runner, opened once per
// arm, that takes one sample of a test at a time. The llama family (bench_runner.cpp) and Flux (bench_flux.cpp) each
// implement it; the loop owns the order (warm-up, interleaving, the timeline) and the figures of the report.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench_runner.hpp"
#include "ferry/offload/scheduler.hpp"

namespace ferry::cli {

class BenchArmRunner {
 public:
  virtual ~BenchArmRunner() = default;
  // One sample of the test at `test` (an index into bench_tests(request)): its seconds. Returns with the device idle.
  virtual double sample(size_t test) = 0;
  // The test's phase once, for the timeline: a prefill, one decode step, one Flux step.
  virtual void trace_phase(size_t test) = 0;
  virtual const LayerScheduler& scheduler() const = 0;  // its trace, for the timeline
  virtual MemoryReport memory() const = 0;
  virtual const std::vector<Placement>& placements() const = 0;
  // The plan in a line ("4 blocks: 2 resident, 2 streamed; output head: resident"), with its note when there is one.
  virtual std::string plan_text() const = 0;
  // Tokens per scheduler step the arm runs with: the request's, or fewer where `auto` chose smaller steps (llama).
  virtual int64_t step_tokens() const = 0;
};

// Opens the arm of `spec` (a Chrome trace to trace_path when not empty); throws BUDGET when its plan does not fit.
using OpenBenchArm =
    std::function<std::unique_ptr<BenchArmRunner>(const BenchArmSpec& spec, const std::string& trace_path)>;

// Runs every arm of report.request (report.env and report.model filled in) into report.
void run_bench_arms(BenchReport& report, const OpenBenchArm& open, const BenchLog& log);

}  // namespace ferry::cli
