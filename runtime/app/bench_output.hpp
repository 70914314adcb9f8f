// `ferry bench`'s report in its three forms:
// - markdown (the default, for people): a few lines naming the model, device, build and method, then one table row
//   per (arm, test) in llama-bench's manner: `t/s` (a Flux model's `step`: `s/step`, seconds per denoising step) as
//   mean ± sample standard deviation over the repetitions;
// - JSON (for machines, tests/data/bench.schema.json): the device, driver, build, every parameter, and for every arm
//   its plan, memory and every sample;
// - CSV: one row per (arm, test) with the statistics (mean_s/stddev_s for every test, mean_tps/stddev_tps for pp and
//   tg), its last column the unit of the figure the markdown prints.
// A simulated link (--link-gbps) is named in the header of each form and marked on every row whose copies it paced.
#pragma once

#include <string>
#include <string_view>

#include "bench_runner.hpp"
#include "json_output.hpp"

namespace ferry::cli {

std::string bench_markdown(const BenchReport& report);
Json bench_json(const BenchReport& report);
std::string bench_csv(const BenchReport& report);

// "1234.57 ± 12.35", as the markdown table prints a test's tokens per second.
std::string tps_text(const SampleStats& tps);
// The unit of a test's figure in every form: "t/s" (pp, tg: tokens per second), "s/step" (Flux: seconds per step).
std::string_view test_unit(TestKind kind) noexcept;
// The markdown table's figure of a test in its unit: "1234.57 ± 12.35" t/s, "0.3812 ± 0.0021" s/step.
std::string test_value_text(const BenchTest& t);

}  // namespace ferry::cli
