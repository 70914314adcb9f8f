// bench_quantize_cpu: the cost of ferry's reference quantizers (kernels/ref, ref::quantize) per GGML type, one thread.
//
// Why: `ferry make-model` writes multi-GB synthetic models with ref::quantize, on machines whose time is scarce, so
// the quantizer's ns per weight decides how long making a benchmark model takes. What it measures: one thread
// quantizing N weights (Gaussian, sigma 0.02, 0.1% outliers at 8x: the shape of real layers, so the K-quant scale
// searches do realistic work) in rows of 4096, median of several runs after a warm-up. It also prints the normalised
// RMS error sqrt(mse / mean(x^2)) of quantize -> dequantize, so a faster search that loses accuracy shows up here too.
// It reports wall time and the thread's CPU time: on a shared, loaded machine the CPU time moves much less with the
// load, but compare types (or builds) from the same run only either way.
//
// Usage: bench_quantize_cpu [--elements N] [--runs R] [--types q4_k,q6_k,...] [-o results.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include <time.h>
#include <vector>

#include "bench_common.hpp"
#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace {

using ferry::GgmlType;
using namespace ferry::bench;

std::vector<float> random_weights(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::uniform_int_distribution<int> outlier(0, 999);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng) * (outlier(rng) == 0 ? 8.0f : 1.0f);
  return v;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timings {
  std::vector<double> wall, cpu;
};

// Times fn() `runs` times after one warm-up; wall and thread CPU seconds per run.
template <class Fn>
Timings time_wall_and_cpu(int runs, Fn&& fn) {
  fn();
  Timings t;
  for (int r = 0; r < runs; ++r) {
    const double c0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    fn();
    t.wall.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    t.cpu.push_back(thread_cpu_seconds() - c0);
  }
  return t;
}

struct Row {
  std::string type;
  Stats wall, cpu;
  double error = 0;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reference quantization cost per GGML type, one thread"};
  int64_t elements = int64_t{1} << 20;
  int runs = 5;
  std::string types_arg = "q4_0,q8_0,q2_k,q3_k,q4_k,q5_k,q6_k,iq4_nl,iq4_xs";
  std::string json_path;
  uint64_t seed = 1;
  app.add_option("--elements", elements, "weights per type (a multiple of 4096, the row length)")
      ->check(CLI::Range(int64_t{4096}, int64_t{1} << 30));
  app.add_option("--runs", runs, "timed runs per type (median and spread over these)")->check(CLI::Range(1, 1000));
  app.add_option("--types", types_arg, "comma-separated type names");
  app.add_option("--seed", seed, "seed of the random weights");
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  constexpr int64_t kRow = 4096;
  if (elements % kRow != 0) {
    std::cerr << "--elements must be a multiple of " << kRow << ", got " << elements << "\n";
    return 2;
  }

  std::vector<GgmlType> types;
  std::stringstream list(types_arg);
  for (std::string name; std::getline(list, name, ',');) {
    const auto t = ferry::parse_type_name(name);
    if (!t || !ferry::type_traits(*t).quantizable || !ferry::type_traits(*t).dequantizable) {
      std::cerr << "unknown type '" << name << "', or one ref:: cannot both quantize and dequantize\n";
      return 2;
    }
    types.push_back(*t);
  }

  try {
    const auto n = static_cast<size_t>(elements);
    const std::vector<float> weights = random_weights(n, seed);
    std::vector<float> back(n);
    std::vector<Row> rows;
    for (GgmlType t : types) {
      const uint64_t row_b = ferry::row_bytes(t, kRow);
      std::vector<uint8_t> q(ferry::row_bytes(t, elements));
      Row row;
      row.type = std::string(ferry::type_name(t));
      const Timings tm = time_wall_and_cpu(runs, [&] {
        for (int64_t r = 0; r < elements / kRow; ++r)
          ferry::ref::quantize(t, weights.data() + r * kRow, q.data() + r * row_b, kRow);
      });
      row.wall = stats_of(tm.wall);
      row.cpu = stats_of(tm.cpu);
      ferry::ref::dequantize(t, q.data(), back.data(), elements);
      double num = 0, den = 0;
      for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(back[i]) - weights[i];
        num += d * d;
        den += static_cast<double>(weights[i]) * weights[i];
      }
      row.error = std::sqrt(num / den);
      rows.push_back(row);
    }

    const std::string cpu = cpu_model();
    std::printf("## Reference quantization, one thread\n\n");
    std::printf("cpu: %s; build %s%s; %lld weights per type in rows of %lld; median of %d runs after 1 warm-up\n\n",
                cpu.c_str(), FERRY_GIT_SHA, dirty_suffix(), static_cast<long long>(elements),
                static_cast<long long>(kRow), runs);
    std::printf(
        "| type | ns/weight wall (median) | wall (min .. max) | ns/weight CPU (median) | CPU (min .. max) | "
        "normalised RMS error |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
    const double ns = 1e9 / static_cast<double>(elements);
    for (const Row& r : rows)
      std::printf("| %s | %.1f | %.1f .. %.1f | %.1f | %.1f .. %.1f | %.5f |\n", r.type.c_str(), r.wall.median * ns,
                  r.wall.min * ns, r.wall.max * ns, r.cpu.median * ns, r.cpu.min * ns, r.cpu.max * ns, r.error);

    if (!json_path.empty()) {
      nlohmann::json j;
      j["benchmark"] = "quantize_cpu_ref";
      j["build"] = build_json();
      j["host"] = host_json(cpu);
      j["parameters"] = {{"elements", elements},
                         {"row", kRow},
                         {"runs", runs},
                         {"warmup_runs", 1},
                         {"threads", 1},
                         {"seed", seed},
                         {"data", "gaussian sigma 0.02, 0.1% outliers x8"}};
      for (const Row& r : rows) {
        j["results"].push_back({
            {"type", r.type},
            {"ns_per_weight_wall",
             {{"median", r.wall.median * ns}, {"min", r.wall.min * ns}, {"max", r.wall.max * ns}}},
            {"ns_per_weight_cpu", {{"median", r.cpu.median * ns}, {"min", r.cpu.min * ns}, {"max", r.cpu.max * ns}}},
            {"normalised_rms_error", r.error},
        });
      }
      if (!write_json_file(json_path, j)) {
        std::cerr << "cannot write " << json_path << "\n";
        return 1;
      }
    }
  } catch (const ferry::Error& e) {
    std::cerr << "bench_quantize_cpu: " << ferry::category_name(e.category()) << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
