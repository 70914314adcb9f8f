// bench_dequant_cpu: the rate of ferry's scalar reference dequantization (kernels/ref), per GGML type, on this CPU.
//
// What it measures: one thread turning N quantized elements (random Gaussian weights with outliers, quantized by the
// reference quantizer) into float32, timed over several runs after a warm-up. Rates are GB/s of float32 output and GB/s
// of quantized input (1 GB = 1e9 bytes). The reference is plain scalar code, the oracle rather than a fast path, so the
// numbers are a floor that the CPU kernels (kernels/cpu) are compared against. The limit it is set against is a
// single-thread memcpy of the output size, measured in the same run (a dequantizer writes that many bytes at least).
//
// Usage: bench_dequant_cpu [--elements N] [--runs R] [--types q4_0,q4_k,...] [-o results.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <tbb/parallel_for.h>

#include "bench_common.hpp"
#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace {

using ferry::GgmlType;
using namespace ferry::bench;

// Gaussian weights (sigma 0.02) with 0.1% outliers at 8x: the shape of real layers, so K-quant scales look real too.
std::vector<float> random_weights(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  const size_t chunk = 1 << 16;
  tbb::parallel_for(size_t{0}, (n + chunk - 1) / chunk, [&](size_t c) {
    std::mt19937_64 rng(seed * 1000003u + c);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::uniform_int_distribution<int> outlier(0, 999);
    for (size_t i = c * chunk; i < std::min(n, (c + 1) * chunk); ++i)
      v[i] = dist(rng) * (outlier(rng) == 0 ? 8.0f : 1.0f);
  });
  return v;
}

struct Row {
  std::string type;
  uint64_t bytes_in = 0, bytes_out = 0;
  Stats seconds;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Reference (scalar) dequantization rate per GGML type, one thread"};
  int64_t elements = int64_t{1} << 24;
  int runs = 11;
  std::string types_arg = "f32,f16,bf16,q4_0,q4_1,q5_0,q5_1,q8_0,q2_k,q3_k,q4_k,q5_k,q6_k,iq4_nl,iq4_xs";
  std::string json_path;
  uint64_t seed = 1;
  app.add_option("--elements", elements, "elements per type (a multiple of 256)")
      ->check(CLI::Range(int64_t{256}, int64_t{1} << 31));
  app.add_option("--runs", runs, "timed runs per type (median and spread over these; at least 10)")
      ->check(CLI::Range(10, 1000));
  app.add_option("--types", types_arg, "comma-separated type names");
  app.add_option("--seed", seed, "seed of the random weights");
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  if (elements % 256 != 0) {
    std::cerr << "--elements must be a multiple of 256 (the K-quant block), got " << elements << "\n";
    return 2;
  }

  std::vector<GgmlType> types;
  std::stringstream list(types_arg);
  for (std::string name; std::getline(list, name, ',');) {
    const auto t = ferry::parse_type_name(name);
    if (!t || !ferry::type_traits(*t).dequantizable) {
      std::cerr << "unknown or non-dequantizable type '" << name << "'\n";
      return 2;
    }
    types.push_back(*t);
  }

  try {
    const auto n = static_cast<size_t>(elements);
    const std::vector<float> weights = random_weights(n, seed);
    std::vector<float> out(n);

    // The limit: a single-thread copy of the float32 output size.
    std::vector<float> copy_src(weights);
    const Stats copy_s =
        stats_of(time_runs(runs, [&] { std::memcpy(out.data(), copy_src.data(), n * sizeof(float)); }));
    const double copy_gbps = static_cast<double>(n * sizeof(float)) / copy_s.median / 1e9;
    copy_src.clear();
    copy_src.shrink_to_fit();

    std::vector<Row> rows;
    double checksum = 0;
    for (GgmlType t : types) {
      // Quantize in rows of 4096 from all cores: the reference quantizer is thread-safe and the K-quant search is slow.
      const int64_t row_len = 4096;
      const uint64_t row_b = ferry::row_bytes(t, row_len);
      std::vector<uint8_t> q(ferry::row_bytes(t, elements));
      const int64_t full_rows = elements / row_len;
      tbb::parallel_for(int64_t{0}, full_rows, [&](int64_t r) {
        ferry::ref::quantize(t, weights.data() + r * row_len, q.data() + r * row_b, row_len);
      });
      const int64_t tail = elements - full_rows * row_len;
      if (tail) ferry::ref::quantize(t, weights.data() + full_rows * row_len, q.data() + full_rows * row_b, tail);

      Row row;
      row.type = std::string(ferry::type_name(t));
      row.bytes_in = q.size();
      row.bytes_out = n * sizeof(float);
      row.seconds = stats_of(time_runs(runs, [&] { ferry::ref::dequantize(t, q.data(), out.data(), elements); }));
      checksum += out[n / 3] + out[n - 1];  // keeps the output observable
      rows.push_back(row);
    }

    const std::string cpu = cpu_model();
    std::printf("## Reference dequantization, one thread\n\n");
    std::printf(
        "cpu: %s; build %s%s; %lld elements per type; median of %d runs after 1 warm-up; "
        "1 GB = 1e9 B\n\n",
        cpu.c_str(), FERRY_GIT_SHA, dirty_suffix(), static_cast<long long>(elements), runs);
    std::printf("limit: single-thread memcpy of the output: %.2f GB/s\n\n", copy_gbps);
    std::printf(
        "| type | in MiB | out GB/s (median) | out GB/s (min .. max) | spread | in GB/s (median) | "
        "of memcpy |\n");
    std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Row& r : rows) {
      const double out_med = static_cast<double>(r.bytes_out) / r.seconds.median / 1e9;
      const double out_lo = static_cast<double>(r.bytes_out) / r.seconds.max / 1e9;
      const double out_hi = static_cast<double>(r.bytes_out) / r.seconds.min / 1e9;
      const double in_med = static_cast<double>(r.bytes_in) / r.seconds.median / 1e9;
      const double spread = (r.seconds.max - r.seconds.min) / r.seconds.median * 100.0;
      std::printf("| %s | %.1f | %.2f | %.2f .. %.2f | %.1f%% | %.2f | %.1f%% |\n", r.type.c_str(),
                  static_cast<double>(r.bytes_in) / (1 << 20), out_med, out_lo, out_hi, spread, in_med,
                  100.0 * out_med / copy_gbps);
    }
    std::printf("\n(checksum %.6g)\n", checksum);

    if (!json_path.empty()) {
      nlohmann::json j;
      j["benchmark"] = "dequant_cpu_ref";
      j["build"] = build_json();
      j["host"] = host_json(cpu);
      j["parameters"] = {{"elements", elements}, {"runs", runs},
                         {"warmup_runs", 1},     {"threads", 1},
                         {"seed", seed},         {"data", "gaussian sigma 0.02, 0.1% outliers x8, quantized by ref"}};
      j["limit"] = {{"what", "single-thread memcpy of the float32 output"},
                    {"gbps_median", copy_gbps},
                    {"seconds", stats_json(copy_s)}};
      for (const Row& r : rows) {
        const double out_med = static_cast<double>(r.bytes_out) / r.seconds.median / 1e9;
        j["results"].push_back({
            {"type", r.type},
            {"bytes_in", r.bytes_in},
            {"bytes_out", r.bytes_out},
            {"seconds", stats_json(r.seconds)},
            {"out_gbps",
             {{"median", out_med},
              {"min", static_cast<double>(r.bytes_out) / r.seconds.max / 1e9},
              {"max", static_cast<double>(r.bytes_out) / r.seconds.min / 1e9}}},
            {"in_gbps_median", static_cast<double>(r.bytes_in) / r.seconds.median / 1e9},
            {"spread_pct", (r.seconds.max - r.seconds.min) / r.seconds.median * 100.0},
            {"ratio_to_memcpy", out_med / copy_gbps},
        });
      }
      if (!write_json_file(json_path, j)) {
        std::cerr << "cannot write " << json_path << "\n";
        return 1;
      }
    }
  } catch (const ferry::Error& e) {
    std::cerr << "bench_dequant_cpu: " << ferry::category_name(e.category()) << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
