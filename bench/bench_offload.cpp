// bench_offload: the offload engine against the device's own limits, measured in the same run.
//
// What it measures (GPU step times from CUDA events on the compute stream; warm-up first; median and spread of
// --runs >= 10 steps):
// 1. Memory: synthetic Llama-13B-width stack with the byte count of the real 13B Q4_0 model, T = 32, at budgets of
//    1, 2, 4 and 8 GiB with the resident-first placement: the process's device memory (free memory at the process's
//    start minus the lowest free memory a sampler thread saw during the run, plus the context overhead measured at
//    start) and the arena's high-water mark, both against the budget. Run last, so earlier sections' leftovers count.
// 2. Limits: host-to-device copy of 256 MiB from pinned and from pageable memory.
// 3. Streaming: the Llama stack at T = 512, every layer streamed: the copy rate during steps against the pinned rate
//    (target >= 90%), and the same from pageable memory (the pinning-failure path) as a ratio.
// 4. Overlap: Flux-width stack (Q4_K) at T = 4096, where a layer's compute exceeds its copy: streamed step time
//    against the all-resident step (target <= 1.10x); and for every streamed case, step time against
//    max(total compute = all-resident step, total copy = bytes / pinned rate) (target <= 1.10x).
//
// Usage: bench_offload [--runs R] [--quick] [-o results.json]
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_offload.hpp"
#include "ferry/error.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/size_parse.hpp"

using namespace ferry;
using namespace ferry::bench;
using nlohmann::json;

namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;
constexpr uint64_t kMiB = uint64_t{1} << 20;

std::string fmt(const char* format, double v) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, v);
  return buffer;
}

const char* verdict(bool ok) { return ok ? "yes" : "NO"; }

SchedulerOptions options(uint64_t budget, int depth, int64_t max_tokens) {
  SchedulerOptions o;
  o.vram_budget = budget;
  o.prefetch_depth = depth;
  o.max_tokens = max_tokens;
  return o;
}

std::vector<Placement> all(size_t n, Placement p) { return std::vector<Placement>(n, p); }

// Section 1. `base` carries the scratch settings; budget, depth and T are set here.
json memory_section(const std::string& title, const SyntheticStack& stack, const SchedulerOptions& base,
                    const std::vector<uint64_t>& budgets, int runs, const DeviceMemoryBaseline& baseline,
                    uint64_t free_at_start) {
  const int64_t tokens = 32;
  std::printf(
      "\n## Device memory within the budget: %s (%zu layers, %s, T = %lld, S = 2, FP16 tile <= %s, cuBLAS "
      "workspace %s)\n\n",
      title.c_str(), stack.size(), format_size(stack.weight_bytes()).c_str(), static_cast<long long>(tokens),
      format_size(base.fp16_scratch_limit).c_str(), format_size(base.cublas_workspace_bytes).c_str());
  std::printf("context overhead %s (%s); margin %s\n\n", format_size(baseline.context_bytes).c_str(),
              baseline.method.c_str(), format_size(base.margin.floor_bytes).c_str());
  std::printf(
      "| budget | resident layers | arena | arena high-water | process device memory | within budget | "
      "step ms (median) |\n| ---: | ---: | ---: | ---: | ---: | :---: | ---: |\n");
  json rows = json::array();
  for (uint64_t budget : budgets) {
    json row = {{"stack", title}, {"budget_bytes", budget}};
    SchedulerOptions o = base;
    o.vram_budget = budget;
    o.prefetch_depth = 1;
    o.max_tokens = tokens;
    const MemoryPlanInput input = scheduler_memory_input(stack.layers(), all(stack.size(), Placement::STREAMED), o);
    std::vector<Placement> placement;
    try {
      placement = resident_first_placement(input, budget);
    } catch (const Error& e) {
      const uint64_t minimum = compute_memory_plan(input, 0).minimum_budget;
      row["refused"] = true;
      row["minimum_budget_bytes"] = minimum;
      std::printf("| %s | refused: the minimum is %s | | | | | |\n", format_size(budget).c_str(),
                  format_size(minimum).c_str());
      rows.push_back(row);
      continue;
    }
    const size_t resident = static_cast<size_t>(std::count(placement.begin(), placement.end(), Placement::RESIDENT));
    FERRY_CUDA_CHECK(cudaDeviceSynchronize());
    // "Before the run" is the process's start (just after the context): whatever earlier sections left behind on the
    // device (loaded kernel modules, library state) counts against this run too.
    const uint64_t free_before = free_at_start;
    FreeMemorySampler sampler;
    MemoryReport report;
    RunResult r;
    {
      LayerScheduler s(stack.layers(), placement, o);
      r = run_steps(s, stack, tokens, 1, runs);
      report = s.memory();
    }
    const uint64_t lowest = sampler.stop();
    const uint64_t process = free_before - std::min(free_before, lowest) + baseline.context_bytes;
    const bool ok = process <= budget && report.arena_high_water <= budget;
    std::printf("| %s | %zu / %zu | %s | %s | %s | %s | %.2f |\n", format_size(budget).c_str(), resident, stack.size(),
                format_size(report.arena_bytes).c_str(), format_size(report.arena_high_water).c_str(),
                format_size(process).c_str(), verdict(ok), r.step_ms.median);
    row.update({{"resident_layers", resident},
                {"layers", stack.size()},
                {"arena_bytes", report.arena_bytes},
                {"arena_high_water_bytes", report.arena_high_water},
                {"process_device_bytes", process},
                {"context_bytes", baseline.context_bytes},
                {"within_budget", ok},
                {"step_ms", {{"median", r.step_ms.median}, {"min", r.step_ms.min}, {"max", r.step_ms.max}}}});
    rows.push_back(row);
  }
  return rows;
}

struct Case {
  std::string name;
  const SyntheticStack* stack;
  int64_t tokens;
  int depth;
};

// Sections 3 and 4: one stack and T, all-resident against streamed (and pageable), alternating schedulers.
json stream_case(const Case& c, int runs, double pinned_gbps, bool pageable_too) {
  const SyntheticStack& stack = *c.stack;
  const size_t n = stack.size();
  LayerScheduler resident(stack.layers(), all(n, Placement::RESIDENT), options(64 * kGiB, 1, c.tokens));
  LayerScheduler streamed(stack.layers(), all(n, Placement::STREAMED), options(64 * kGiB, c.depth, c.tokens));
  // Blocks of consecutive steps, alternating between the two schedulers so drift (clocks, temperature) hits both
  // alike. The first step of each block is not timed: it would start with copies prefetched during the other
  // scheduler's block, which back-to-back steps do not get.
  std::vector<double> res_ms, str_ms, rates;
  double compute_sum = 0;
  constexpr int kBlocks = 2;
  const int per_block = (runs + kBlocks - 1) / kBlocks;
  for (int block = 0; block < kBlocks; ++block) {
    const RunResult a = run_steps(resident, stack, c.tokens, 1, per_block);
    const RunResult b = run_steps(streamed, stack, c.tokens, 1, per_block);
    res_ms.insert(res_ms.end(), a.step_samples.begin(), a.step_samples.end());
    str_ms.insert(str_ms.end(), b.step_samples.begin(), b.step_samples.end());
    rates.insert(rates.end(), b.rate_samples.begin(), b.rate_samples.end());
    compute_sum += a.gpu_compute_ms;
  }
  compute_sum /= kBlocks;
  const Stats res = stats_of(res_ms), str = stats_of(str_ms), rate = stats_of(rates);
  const double bytes = static_cast<double>(streamed.last_step().copy_bytes);
  const double copy_ms = bytes / (pinned_gbps * 1e6);
  const double bound = std::max(res.median, copy_ms);
  json j = {{"case", c.name},
            {"layers", n},
            {"tokens", c.tokens},
            {"prefetch_depth", c.depth},
            {"layer_bytes", bytes / static_cast<double>(n)},
            {"resident_step_ms", {{"median", res.median}, {"min", res.min}, {"max", res.max}}},
            {"streamed_step_ms", {{"median", str.median}, {"min", str.min}, {"max", str.max}}},
            {"per_layer_compute_ms", compute_sum / static_cast<double>(n)},
            {"per_layer_copy_ms", copy_ms / static_cast<double>(n)},
            {"streaming_gbps", {{"median", rate.median}, {"min", rate.min}, {"max", rate.max}}},
            {"streaming_vs_pinned", rate.median / pinned_gbps},
            {"streamed_vs_resident", str.median / res.median},
            {"streamed_vs_bound", str.median / bound}};
  std::printf("| %s | %lld | %d | %.2f | %.2f | %.3f | %.3f | %.3f | %.1f (%.0f%%) | %.3f | %.3f |\n", c.name.c_str(),
              static_cast<long long>(c.tokens), c.depth, res.median, str.median, compute_sum / n, copy_ms / n,
              str.median / res.median, rate.median, 100 * rate.median / pinned_gbps, str.median / bound,
              (str.max - str.min) / str.median);
  if (pageable_too) {
    SchedulerOptions o = options(64 * kGiB, c.depth, c.tokens);
    o.simulate_pin_failure = true;
    o.warn = [](const std::string&) {};  // expected: the fallback warns
    LayerScheduler pageable(stack.layers(), all(n, Placement::STREAMED), o);
    const RunResult p = run_steps(pageable, stack, c.tokens, 1, runs);
    j["pageable"] = {{"step_ms", p.step_ms.median},
                     {"streaming_gbps", p.copy_gbps.median},
                     {"step_ratio_pageable_over_pinned", p.step_ms.median / str.median},
                     {"rate_ratio_pinned_over_pageable", rate.median / p.copy_gbps.median}};
  }
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"offload engine: memory within budget, streaming rate, overlap, pinned vs pageable"};
  int runs = 10;
  bool quick = false;
  std::string json_path;
  app.add_option("--runs", runs, "timed steps per configuration (median and spread; at least 10)")
      ->check(CLI::Range(10, 1000));
  app.add_flag("--quick", quick, "fewer layers (a smoke run; the figures are not the reported ones)");
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    // First, before anything touches the device: the context overhead needs a reading from before the context.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows appear as they are measured, also through a pipe
    const DeviceMemoryBaseline& baseline = device_memory_baseline();
    const uint64_t free_at_start = FreeMemorySampler::free_now();
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, baseline.device));
    std::printf("# bench_offload on %s (%s total), build %s%s\n", prop.name, format_size(baseline.total_bytes).c_str(),
                FERRY_GIT_SHA, dirty_suffix());
    json out = {{"bench", "bench_offload"},
                {"device", prop.name},
                {"device_total_bytes", baseline.total_bytes},
                {"build", gpu_build_json()},
                {"runs", runs},
                {"context", {{"bytes", baseline.context_bytes}, {"method", baseline.method}}}};
    // Written after every section, so a run cut short still leaves what it measured.
    auto write_json = [&] {
      if (json_path.empty()) return;
      if (!write_json_file(json_path, out)) throw Error(ErrorCategory::IO, "cannot write " + json_path);
    };

    const double pinned = h2d_rate(256 * kMiB, true, runs).median;
    const double pageable = h2d_rate(256 * kMiB, false, runs).median;
    std::printf("\n## Copy limits (256 MiB host to device)\n\n| path | GB/s |\n| --- | ---: |\n");
    std::printf("| pinned | %.1f |\n| pageable | %.1f |\n| pinned / pageable | %.2fx |\n", pinned, pageable,
                pinned / pageable);
    out["limits"] = {{"h2d_pinned_gbps", pinned}, {"h2d_pageable_gbps", pageable}};
    write_json();

    const SyntheticStack llama(llama_13b_synthetic(12, GgmlType::Q4_0, 14));
    const SyntheticStack flux(flux_synthetic(quick ? 6 : 12, GgmlType::Q4_K, 15));
    std::printf("\n## Streaming and overlap (all-resident vs all-streamed, alternating)\n\n");
    std::printf(
        "| case | T | depth | resident ms | streamed ms | compute/layer ms | copy/layer ms | streamed / "
        "resident | streaming GB/s (of pinned) | streamed / max(compute, copy) | spread |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    json cases = json::array();
    cases.push_back(stream_case({"llama-13b prefill", &llama, 512, 2}, runs, pinned, true));
    cases.push_back(stream_case({"llama-13b decode", &llama, 1, 1}, runs, pinned, false));
    cases.push_back(stream_case({"flux step", &flux, 4096, 1}, runs, pinned, false));
    cases.push_back(stream_case({"flux step", &flux, 4096, 2}, runs, pinned, false));
    out["streaming"] = cases;

    write_json();

    out["memory"] = json::array();
    {
      // 92 layers of W1 + W2 at 5120 x 13824 in Q4_0: 6.8 GiB, the size of Llama-2-13B in Q4_0.
      const SyntheticStack llama_full(llama_13b_synthetic(quick ? 24 : 92, GgmlType::Q4_0, 13));
      for (json& row : memory_section("llama-13b size", llama_full, SchedulerOptions{},
                                      {1 * kGiB, 2 * kGiB, 4 * kGiB, 8 * kGiB}, runs, baseline, free_at_start))
        out["memory"].push_back(std::move(row));
    }
    write_json();
    {
      // At 1 GiB the H100's context (~0.6 GiB) and the default margin (256 MiB) leave too little for two 13B-width
      // slots: a Flux-width stack with a small FP16 tile and cuBLAS workspace shows the same accounting holding there.
      const SyntheticStack flux_small(flux_synthetic(24, GgmlType::Q4_0, 16));
      SchedulerOptions lean;
      lean.fp16_scratch_limit = 16 * kMiB;
      lean.cublas_workspace_bytes = 8 * kMiB;
      for (json& row : memory_section("flux width, lean scratch", flux_small, lean, {1 * kGiB, 2 * kGiB}, runs,
                                      baseline, free_at_start))
        out["memory"].push_back(std::move(row));
    }

    const json& prefill = cases[0];
    const double rate_share = prefill["streaming_vs_pinned"].get<double>();
    std::printf("\n## Targets\n\n| target | measured | met |\n| --- | ---: | :---: |\n");
    std::printf("| streaming rate >= 90%% of pinned (llama prefill) | %.1f%% | %s |\n", 100 * rate_share,
                verdict(rate_share >= 0.90));
    for (size_t i = 2; i < cases.size(); ++i) {
      const double r = cases[i]["streamed_vs_resident"].get<double>();
      std::printf("| flux T=4096 depth %d: streamed <= 1.10x resident | %.3fx | %s |\n",
                  cases[i]["prefetch_depth"].get<int>(), r, verdict(r <= 1.10));
    }
    for (const json& c : cases) {
      const double r = c["streamed_vs_bound"].get<double>();
      std::printf("| %s T=%lld: step <= 1.10x max(compute, copy) | %.3fx | %s |\n",
                  c["case"].get<std::string>().c_str(), static_cast<long long>(c["tokens"].get<int64_t>()), r,
                  verdict(r <= 1.10));
    }
    const json& pg = prefill["pageable"];
    std::printf("| pinned vs pageable staging (llama prefill step) | %.2fx faster, %.1f vs %.1f GB/s | |\n",
                pg["step_ratio_pageable_over_pinned"].get<double>(), prefill["streaming_gbps"]["median"].get<double>(),
                pg["streaming_gbps"].get<double>());
    bool memory_ok = true;
    for (const json& row : out["memory"])
      if (row.contains("within_budget")) memory_ok = memory_ok && row["within_budget"].get<bool>();
    std::printf("| process device memory <= budget at 1, 2, 4, 8 GiB (every run the plan admitted) | | %s |\n",
                verdict(memory_ok));

    out["targets"] = {{"streaming_rate_share", rate_share}, {"memory_within_budget", memory_ok}};
    write_json();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_offload: %s\n", e.what());
    return 1;
  }
  return 0;
}
