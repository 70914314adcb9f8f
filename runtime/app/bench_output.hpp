// `ferry bench`'s report in its three forms:
// - markdown (the default, for people): a few lines naming the model, device, build and method, then one table row
//   per (arm, test) in llama-bench's manner: `t/s` as mean ± sample standard deviation over the repetitions;
// - JSON (for machines, tests/data/bench.schema.json): the device, driver, build, every parameter, and for every arm
//   its plan, memory and every sample;
// - CSV: one row per (arm, test) with the statistics.
// A simulated link (--link-gbps) is named in the header of each form and marked on every row whose copies it paced.
#pragma once

#include <string>

#include "bench_runner.hpp"
#include "json_output.hpp"

namespace ferry::cli {

std::string bench_markdown(const BenchReport& report);
Json bench_json(const BenchReport& report);
std::string bench_csv(const BenchReport& report);

// "1234.57 ± 12.35", as the markdown table prints a test's tokens per second.
std::string tps_text(const SampleStats& tps);

}  // namespace ferry::cli
