// End-to-end Flux benchmark: seconds per denoising step (one model call) of a synthetic Flux model with real shapes,
// per VRAM budget and placement policy, against ferry's compute floor measured in the same run: the same model with
// F16 weights, fully resident (no dequantization of 4-bit blocks, no streaming).
//
//   bench_flux --preset flux-1-dev --type q4_0 --image 1024x1024 --txt 512 --case 2GiB:resident-stream
//              [--case 8GiB:resident-stream ...] [--floor-budget 40GiB] [-o out.json]
//
// Each case is BUDGET:POLICY[:fp32] ("none" as the budget: no limit below the device's memory; ":fp32": GEMM weight
// tiles dequantized through an FP32 temporary then cast, the path of the tools ferry replaces, for the comparison
// with the direct FP16 dequantization; its temporary is counted in the budget). A case that the budget refuses is a
// row saying so, and the others still run. Models are made once under
// --model-dir (deterministic, seed 1). The targets read off the table: at 2 GiB, s/step <= 1.10 x the floor.
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_cuda_common.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/models/flux/block.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/size_parse.hpp"

using namespace ferry;
using ferry::bench::Clock;

namespace {

struct Case {
  std::string budget;
  std::string policy;
  bool via_fp32 = false;
};

Case parse_case(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos)
    fail(ErrorCategory::INVALID_ARGUMENT, "case '" + text + "': expected BUDGET:POLICY[:fp32]");
  Case c{text.substr(0, colon), text.substr(colon + 1)};
  if (const size_t second = c.policy.find(':'); second != std::string::npos) {
    if (c.policy.substr(second + 1) != "fp32")
      fail(ErrorCategory::INVALID_ARGUMENT, "case '" + text + "': expected BUDGET:POLICY[:fp32]");
    c.via_fp32 = true;
    c.policy.resize(second);
  }
  return c;
}

std::filesystem::path ensure_model(const std::string& dir, const std::string& preset, const std::string& type) {
  const auto file_type = parse_model_file_type(type);
  if (!file_type) fail(ErrorCategory::INVALID_ARGUMENT, "unknown type " + type);
  const FluxPreset* p = find_flux_preset(preset);
  if (p == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "unknown flux preset " + preset + " (" + flux_preset_names() + ")");
  std::filesystem::create_directories(dir);
  const auto path = std::filesystem::path(dir) / (preset + "-" + type + ".gguf");
  if (!std::filesystem::exists(path)) {
    const auto t0 = Clock::now();
    write_flux_model(p->config, p->name, MakeModelOptions{*file_type, 1, 32, ""}, path);
    std::fprintf(stderr, "made %s in %.1f s\n", path.c_str(), std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return path;
}

struct Measured {
  std::string placement;
  std::vector<double> seconds;  // per step, after the warm-up
  double median = 0;
  MemoryReport memory;
  uint64_t process_bytes = 0;
};

// `steps` model calls after one warm-up, on random inputs of the given size.
Measured measure(const std::filesystem::path& path, uint64_t budget, Policy policy, int64_t width, int64_t height,
                 int64_t n_txt, int steps, uint64_t context_bytes, bool via_fp32 = false) {
  const GgufFile file = GgufFile::open(path);
  const FluxConfig c = FluxConfig::from_gguf(file);
  const FluxWeights w = FluxWeights::from_gguf(file, c);
  const int64_t rows = height / 16, cols = width / 16, n_img = rows * cols;
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal;
  auto draw = [&](int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
  };
  const std::vector<float> img = draw(n_img * c.in_channels), txt = draw(n_txt * c.context_in_dim),
                           y = draw(c.vec_in_dim), ids = flux_position_ids(n_txt, rows, cols);
  FluxRunnerOptions o;
  o.max_tokens = n_txt + n_img;
  o.text_tokens = n_txt;  // the plan prices each stream at its own tokens
  o.vram_budget = budget;
  o.policy = policy;
  o.dequant_via_fp32 = via_fp32;
  const uint64_t free_before = device_free_bytes();
  ferry::bench::FreeMemorySampler sampler;
  FluxRunner runner(c, w, o);
  runner.set_text(txt, n_txt);
  std::vector<float> velocity(img.size());
  Measured m;
  for (int s = 0; s <= steps; ++s) {
    const auto t0 = Clock::now();
    runner.forward(img, n_img, ids, 1.0f - static_cast<float>(s) / static_cast<float>(steps + 1), 3.5f, y, velocity);
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s > 0) m.seconds.push_back(sec);  // the first call warms up (cuBLAS plans, page-in of host weights)
  }
  m.process_bytes = context_bytes + (free_before - std::min(free_before, sampler.stop()));
  std::vector<double> sorted = m.seconds;
  std::sort(sorted.begin(), sorted.end());
  m.median = sorted[sorted.size() / 2];
  m.placement = runner.placement_summary();
  m.memory = runner.scheduler().memory();
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry Flux benchmark"};
  std::string preset = "flux-1-dev", type = "q4_0", model_dir = "/tmp/ferry-bench-models", out_path,
              image = "1024x1024", floor_type = "f16", floor_budget = "none";
  std::vector<std::string> cases_text;
  int64_t n_txt = 512;
  int steps = 5;
  app.add_option("--preset", preset);
  app.add_option("--type", type);
  app.add_option("--image", image, "WxH pixels, multiples of 16");
  app.add_option("--txt", n_txt, "text tokens");
  app.add_option("--steps", steps, "timed model calls per case (after one warm-up); the median is reported");
  app.add_option("--model-dir", model_dir);
  app.add_option("--case", cases_text, "BUDGET:POLICY")->required();
  app.add_option("--floor-type", floor_type, "the floor's weight type (all resident); empty: no floor");
  app.add_option("--floor-budget", floor_budget);
  app.add_option("-o", out_path, "JSON output");
  CLI11_PARSE(app, argc, argv);
  try {
    const size_t x = image.find('x');
    const int64_t width = std::stoll(image.substr(0, x)), height = std::stoll(image.substr(x + 1));
    if (width % 16 != 0 || height % 16 != 0) fail(ErrorCategory::INVALID_ARGUMENT, "--image: multiples of 16");
    const uint64_t context_bytes = device_memory_baseline().context_bytes;
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    auto budget_of = [&](const std::string& text) {
      return text == "none" ? static_cast<uint64_t>(prop.totalGlobalMem) : parse_budget(text);
    };
    std::printf("# Flux benchmark: %s %s, %s (%lld image + %lld text tokens), %s, build %s%s\n\n", preset.c_str(),
                type.c_str(), image.c_str(), static_cast<long long>((width / 16) * (height / 16)),
                static_cast<long long>(n_txt), prop.name, FERRY_GIT_SHA, ferry::bench::dirty_suffix());
    Measured floor;
    if (!floor_type.empty()) {
      floor = measure(ensure_model(model_dir, preset, floor_type), budget_of(floor_budget), Policy::RESIDENT_STREAM,
                      width, height, n_txt, steps, context_bytes);
      std::printf("floor: %s all resident: %.4f s/step (%s)\n\n", floor_type.c_str(), floor.median,
                  floor.placement.c_str());
    }
    std::printf("| budget | policy | dequantization | placement | s/step | / floor | arena | process |\n");
    std::printf("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n");
    nlohmann::json results = nlohmann::json::array();
    const auto path = ensure_model(model_dir, preset, type);
    for (const std::string& text : cases_text) {
      const Case cs = parse_case(text);
      const char* dequant = cs.via_fp32 ? "via FP32 + cast" : "direct FP16";
      Measured m;
      try {
        m = measure(path, budget_of(cs.budget), parse_policy(cs.policy), width, height, n_txt, steps, context_bytes,
                    cs.via_fp32);
      } catch (const Error& e) {
        if (e.category() != ErrorCategory::BUDGET) throw;
        const std::string what = e.what();
        std::printf("| %s | %s | %s | refused: %s | | | | |\n", cs.budget.c_str(), cs.policy.c_str(), dequant,
                    what.substr(0, what.find('\n')).c_str());
        std::fflush(stdout);
        results.push_back({{"budget", cs.budget}, {"policy", cs.policy}, {"dequantization", dequant}, {"refused", what}});
        continue;
      }
      const double ratio = floor.median > 0 ? m.median / floor.median : 0.0;
      std::printf("| %s | %s | %s | %s | %.4f | %.2f | %s | %s |\n", cs.budget.c_str(), cs.policy.c_str(), dequant,
                  m.placement.c_str(), m.median, ratio, format_size(m.memory.arena_bytes).c_str(),
                  format_size(m.process_bytes).c_str());
      std::fflush(stdout);
      results.push_back({{"budget", cs.budget},
                         {"policy", cs.policy},
                         {"dequantization", dequant},
                         {"placement", m.placement},
                         {"seconds_per_step_median", m.median},
                         {"seconds_per_step", m.seconds},
                         {"ratio_to_floor", ratio},
                         {"arena_bytes", m.memory.arena_bytes},
                         {"arena_high_water", m.memory.arena_high_water},
                         {"process_device_bytes", m.process_bytes}});
    }
    if (!out_path.empty()) {
      nlohmann::json j = {{"bench", "flux"},
                          {"device", prop.name},
                          {"build", ferry::bench::gpu_build_json()},
                          {"preset", preset},
                          {"type", type},
                          {"image", image},
                          {"text_tokens", n_txt},
                          {"floor",
                           {{"type", floor_type},
                            {"seconds_per_step_median", floor.median},
                            {"seconds_per_step", floor.seconds},
                            {"process_device_bytes", floor.process_bytes}}},
                          {"cases", results}};
      ferry::bench::write_json_file(out_path, j);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_flux: %s\n", e.what());
    return 1;
  }
  return 0;
}
