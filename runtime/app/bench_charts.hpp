// `ferry bench`'s pictures, as SVG (svg_writer.hpp):
// - the phase chart: for each test (pp<N>, tg<N>; a Flux model's step) a panel of the mean time per test (log scale,
// with ± one standard
//   deviation) against the VRAM budget, one series per policy that ran;
// - the timeline: one prefill and one decode step (a Flux model: one denoising step) of the first arm that ran, its
// trace's spans on four lanes (copy
//   stream, compute stream, CPU pool, host waits) over time, so the overlap of copies and compute can be seen.
// Elements carry classes for tools and tests: each series is <g class="series" data-policy=... data-test=...>, each
// lane <g class="lane" data-lane=... data-phase=...>, each span a <rect class="span">.
#pragma once

#include <string>

#include "bench_runner.hpp"

namespace ferry::cli {

std::string phase_chart_svg(const BenchReport& report);
// Empty when the report has no timeline.
std::string timeline_svg(const BenchReport& report);

}  // namespace ferry::cli
