// End-to-end llama benchmark: prompt processing (prefill) and generation (decode) tokens/s of a synthetic model with
// real shapes, per VRAM budget and placement policy, with the device copy bandwidth measured in the same run so the
// decode rate can be read against its bandwidth bound (weight bytes read per token / copy rate).
//
//   bench_llama --preset llama-3-8b --type q4_k --case 8GiB:resident-first:512:64 [--case ...] [-o out.json]
//
// Each case is BUDGET:POLICY:PROMPT:GEN. Models are made once under --model-dir (deterministic, seed 1).
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "bench_cuda_common.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/text/sampler.hpp"

using namespace ferry;
using ferry::bench::Clock;

namespace {

struct Case {
  std::string budget;
  std::string policy;
  int64_t prompt = 512;
  int64_t gen = 64;
};

Case parse_case(const std::string& text) {
  std::stringstream ss(text);
  std::string part;
  std::vector<std::string> parts;
  while (std::getline(ss, part, ':')) parts.push_back(part);
  if (parts.size() != 4)
    fail(ErrorCategory::INVALID_ARGUMENT, "case '" + text + "': expected BUDGET:POLICY:PROMPT:GEN");
  return Case{parts[0], parts[1], std::stoll(parts[2]), std::stoll(parts[3])};
}

// Device-to-device copy rate, bytes read + written, median of 10 copies of 1 GiB.
double measure_copy_gbps() {
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  FERRY_CUDA_CHECK(cudaMalloc(&a, bytes));  // the limit measurement, outside ferry's arena on purpose
  FERRY_CUDA_CHECK(cudaMalloc(&b, bytes));
  FERRY_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  FERRY_CUDA_CHECK(cudaEventCreate(&e0));
  FERRY_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> ms;
  for (int i = 0; i < 13; ++i) {
    FERRY_CUDA_CHECK(cudaEventRecord(e0));
    FERRY_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    FERRY_CUDA_CHECK(cudaEventRecord(e1));
    FERRY_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    FERRY_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 3) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e6);
}

uint64_t weight_bytes(const LlamaConfig& c, const LlamaWeights& w) {
  uint64_t total = 0;
  for (const auto& l : w.layers) total += LlamaWeights::layer_bytes(l, c);
  total += row_bytes(w.output.type, w.output.n_cols) * static_cast<uint64_t>(w.output.n_rows);
  return total;  // the embedding is looked up (T rows), not read whole
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry llama benchmark"};
  std::string preset = "llama-3-8b", type = "q4_k", model_dir = "/tmp/ferry-bench-models", out_path;
  std::vector<std::string> cases_text;
  int repeats = 3;
  app.add_option("--preset", preset);
  app.add_option("--type", type);
  app.add_option("--model-dir", model_dir);
  app.add_option("--case", cases_text, "BUDGET:POLICY:PROMPT:GEN")->required();
  app.add_option("--repeats", repeats, "runs per case; the median is reported");
  app.add_option("-o", out_path, "JSON output");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto file_type = parse_model_file_type(type);
    if (!file_type) fail(ErrorCategory::INVALID_ARGUMENT, "unknown type " + type);
    std::filesystem::create_directories(model_dir);
    const auto path = std::filesystem::path(model_dir) / (preset + "-" + type + ".gguf");
    if (!std::filesystem::exists(path)) {
      const auto t0 = Clock::now();
      write_llama_model(llama_preset(preset), MakeModelOptions{*file_type, 1, 32, ""}, path);
      std::fprintf(stderr, "made %s in %.1f s\n", path.c_str(),
                   std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const GgufFile file = GgufFile::open(path);
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    const LlamaWeights w = LlamaWeights::from_gguf(file, c);
    // The context overhead is measured (NVML, before and after creating the context) before anything touches the GPU.
    const uint64_t context_bytes = device_memory_baseline().context_bytes;
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    const double copy_gbps = measure_copy_gbps();
    const uint64_t wbytes = weight_bytes(c, w);
    const double bound_tps = copy_gbps * 1e9 / static_cast<double>(wbytes);
    std::printf("# llama benchmark: %s %s (%.2f GiB of weights read per token), %s, build %s\n", preset.c_str(),
                type.c_str(), wbytes / 1073741824.0, prop.name, FERRY_GIT_SHA);
    std::printf("device copy (read + write): %.0f GB/s -> decode bandwidth bound %.1f tokens/s\n\n", copy_gbps,
                bound_tps);
    // The bound is the all-resident one (every weight read from device memory once per token); streamed and CPU
    // placements are limited by the host link and the CPU instead, so their ratio says how far below resident they are.
    std::printf(
        "| budget | policy | placement | prefill tok/s | decode tok/s | decode / resident bound | arena | process |\n");
    std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    nlohmann::json results = nlohmann::json::array();
    for (const std::string& text : cases_text) {
      const Case cs = parse_case(text);
      LlamaRunnerOptions o;
      o.n_ctx = cs.prompt + cs.gen + 8;
      o.max_tokens = std::max<int64_t>(1, std::min<int64_t>(512, cs.prompt));
      o.vram_budget = parse_budget(cs.budget);
      o.policy = parse_policy(cs.policy);
      // Process device memory: the context plus the most the run ever took (sampled through the prefill and decode
      // runs too, so workspaces created lazily by a step count).
      const uint64_t free_before = device_free_bytes();
      ferry::bench::FreeMemorySampler sampler_thread;
      LlamaRunner runner(c, w, o);
      std::vector<int32_t> prompt(cs.prompt);
      for (int64_t i = 0; i < cs.prompt; ++i) prompt[i] = static_cast<int32_t>(259 + (i * 7919) % (c.n_vocab - 259));
      std::vector<float> logits(c.n_vocab);
      std::vector<double> prefill, decode;
      for (int r = 0; r < repeats + 1; ++r) {  // the first run warms up (page-in of CPU weights, cuBLAS plans)
        auto t0 = Clock::now();
        runner.forward(prompt, 0, logits, false);
        const double tp = std::chrono::duration<double>(Clock::now() - t0).count();
        Sampler sampler(SamplerConfig{});
        t0 = Clock::now();
        for (int64_t i = 0; i < cs.gen; ++i) {
          const int32_t next[1] = {sampler.sample(logits)};
          runner.forward(next, cs.prompt + i, logits, false);
        }
        const double td = std::chrono::duration<double>(Clock::now() - t0).count();
        if (r == 0) continue;
        prefill.push_back(cs.prompt / tp);
        decode.push_back(cs.gen / td);
      }
      const uint64_t process = context_bytes + (free_before - std::min(free_before, sampler_thread.stop()));
      std::sort(prefill.begin(), prefill.end());
      std::sort(decode.begin(), decode.end());
      const double p = prefill[prefill.size() / 2], d = decode[decode.size() / 2];
      const MemoryReport m = runner.scheduler().memory();
      std::printf("| %s | %s | %s | %.0f | %.1f | %.0f%% | %s | %s |\n", cs.budget.c_str(), cs.policy.c_str(),
                  runner.placement_summary().c_str(), p, d, 100.0 * d / bound_tps, format_size(m.arena_bytes).c_str(),
                  format_size(process).c_str());
      std::fflush(stdout);
      results.push_back({{"budget", cs.budget},
                         {"policy", cs.policy},
                         {"placement", runner.placement_summary()},
                         {"prompt_tokens", cs.prompt},
                         {"gen_tokens", cs.gen},
                         {"prefill_tps_median", p},
                         {"prefill_tps", prefill},
                         {"decode_tps_median", d},
                         {"decode_tps", decode},
                         {"decode_fraction_of_bound", d / bound_tps},
                         {"arena_bytes", m.arena_bytes},
                         {"arena_high_water", m.arena_high_water},
                         {"process_device_bytes", process}});
    }
    if (!out_path.empty()) {
      nlohmann::json j = {{"bench", "llama"},       {"device", prop.name},
                          {"build", FERRY_GIT_SHA}, {"preset", preset},
                          {"type", type},           {"weight_bytes_per_token", wbytes},
                          {"copy_gbps", copy_gbps}, {"decode_bound_tps", bound_tps},
                          {"cases", results}};
      ferry::bench::write_json_file(out_path, j);  // as before: a failed write does not change the exit status
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_llama: %s\n", e.what());
    return 1;
  }
  return 0;
}
