// bench_cpu_gemv: CPU GEMV (cpu::matmul with T = 1 by default) on real model shapes, as GB/s of quantized weight bytes
// read, against this machine's memory bandwidth measured in the same run.
//
// Why this measure: at T = 1 a weight byte feeds ~3.6 FLOP (Q4_0), so a good GEMV is limited by how fast DRAM delivers
// the weights; its figure of merit is the fraction of the memory read bandwidth it reaches.
// The limit: a STREAM-like parallel read (sum of a float buffer, all oneTBB threads, static partition) and a parallel
// copy (reported as read + write bytes, STREAM's convention) over --stream-mib (default 1 GiB, far beyond any L3).
// GEMV weights: random blocks with finite scales (the kernel's speed does not depend on the values), replicated into
// a pool of at least --pool-mib so every timed call reads a copy that is not in cache (calls rotate through copies).
// Each run is one call; median, min and max over --runs runs after one warm-up call. 1 GB = 1e9 bytes.
//
// Usage: bench_cpu_gemv [--runs R] [--types q4_0,q4_k,q6_k,q8_0] [--tokens T] [--threads N] [--stream-mib M]
//                       [--pool-mib M] [-o results.json]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <tbb/parallel_reduce.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include "bench_common.hpp"
#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/cpu/ops.hpp"

namespace {

using ferry::GgmlType;
using namespace ferry::bench;

// Memory bandwidth limits, all threads.
struct Bandwidth {
  Stats read_s, copy_s;
  uint64_t bytes = 0;
  double read_gbps() const { return static_cast<double>(bytes) / read_s.median / 1e9; }
  double copy_gbps() const { return 2.0 * static_cast<double>(bytes) / copy_s.median / 1e9; }
};

Bandwidth measure_bandwidth(uint64_t bytes, int runs) {
  const size_t n = bytes / sizeof(float);
  std::unique_ptr<float[]> src(new float[n]), dst(new float[n]);
  constexpr size_t kChunk = size_t{1} << 20;  // floats per task: 4 MiB
  const size_t chunks = (n + kChunk - 1) / kChunk;
  // First touch from the threads that will read, so pages spread over the memory controllers as they would for a
  // parallel GEMV.
  tbb::parallel_for(
      size_t{0}, chunks,
      [&](size_t c) {
        for (size_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
          src[i] = static_cast<float>(i & 1023), dst[i] = 0;
      },
      tbb::static_partitioner());
  Bandwidth bw;
  bw.bytes = n * sizeof(float);
  volatile float sink = 0;
  bw.read_s = stats_of(time_runs(runs, [&](int) {
    sink = tbb::parallel_reduce(
        tbb::blocked_range<size_t>(0, chunks), 0.0f,
        [&](const tbb::blocked_range<size_t>& r, float acc) {
          for (size_t c = r.begin(); c < r.end(); ++c) {
            float part[16] = {};  // independent lanes so the loop vectorises and is not add-latency bound
            const size_t end = std::min(n, (c + 1) * kChunk);
            size_t i = c * kChunk;
            for (; i + 16 <= end; i += 16)
              for (int l = 0; l < 16; ++l) part[l] += src[i + l];
            for (float p : part) acc += p;
          }
          return acc;
        },
        [](float a, float b) { return a + b; }, tbb::static_partitioner());
  }));
  bw.copy_s = stats_of(time_runs(runs, [&](int) {
    tbb::parallel_for(
        size_t{0}, chunks,
        [&](size_t c) {
          const size_t i = c * kChunk;
          std::memcpy(&dst[i], &src[i], (std::min(n, i + kChunk) - i) * sizeof(float));
        },
        tbb::static_partitioner());
  }));
  (void)sink;
  return bw;
}

// Random codes with finite scales: every half field that can be a scale gets a small finite value. Simpler than
// knowing each layout: rewrite every 16-bit word that decodes to a non-finite or huge half (the codes are random
// anyway; speed does not depend on them).
std::vector<uint8_t> random_weight_bytes(uint64_t bytes, uint64_t seed) {
  std::vector<uint8_t> v(bytes);
  constexpr uint64_t kChunk = 1 << 20;
  tbb::parallel_for(uint64_t{0}, (bytes + kChunk - 1) / kChunk, [&](uint64_t c) {
    std::mt19937_64 rng(seed * 1000003u + c);
    for (uint64_t i = c * kChunk; i < std::min(bytes, (c + 1) * kChunk); i += 8) {
      const uint64_t r = rng();
      std::memcpy(&v[i], &r, std::min<uint64_t>(8, bytes - i));
    }
    for (uint64_t i = c * kChunk; i + 1 < std::min(bytes, (c + 1) * kChunk); i += 2) {
      uint16_t h;
      std::memcpy(&h, &v[i], 2);
      if (((h >> 10) & 31) >= 20) h = static_cast<uint16_t>(h & 0x83ff);  // exponent capped: |value| < 2^5
      std::memcpy(&v[i], &h, 2);
    }
  });
  return v;
}

struct Shape {
  int64_t n, k;  // output rows, reduction length
};

struct Row {
  std::string type;
  Shape shape;
  uint64_t bytes = 0;
  int copies = 0;
  Stats seconds;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU GEMV rate (GB/s of quantized weights) against this machine's memory bandwidth"};
  int runs = 15;
  int tokens = 1;
  int threads = 0;
  int64_t stream_mib = 1024, pool_mib = 1024;
  std::string types_arg = "q4_0,q4_k,q6_k,q8_0";
  std::string json_path;
  app.add_option("--runs", runs, "timed runs per case (median and spread over these; at least 10)")
      ->check(CLI::Range(10, 10000));
  app.add_option("--tokens", tokens, "tokens per call (1 = decode; up to cpu::kCpuInt8MaxTokens the int8 GEMV path)")
      ->check(CLI::Range(1, 512));
  app.add_option("--threads", threads, "oneTBB threads (0 = all hardware threads)")->check(CLI::Range(0, 4096));
  app.add_option("--stream-mib", stream_mib, "buffer size of the bandwidth measurement")->check(CLI::Range(64, 65536));
  app.add_option("--pool-mib", pool_mib, "minimum bytes of weight copies each case rotates through")
      ->check(CLI::Range(16, 65536));
  app.add_option("--types", types_arg, "comma-separated type names");
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<tbb::global_control> limit;
  if (threads > 0) limit = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism, threads);
  const int used_threads = tbb::this_task_arena::max_concurrency();

  std::vector<GgmlType> types;
  std::stringstream list(types_arg);
  for (std::string name; std::getline(list, name, ',');) {
    const auto t = ferry::parse_type_name(name);
    if (!t || !ferry::type_traits(*t).dequantizable) {
      std::cerr << "unknown or unsupported type '" << name << "'\n";
      return 2;
    }
    types.push_back(*t);
  }
  // Llama-2/3 7-8B attention and FFN, 13B FFN, and a 32000-token output layer of a 5120-wide model.
  const Shape kShapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {5120, 13824}, {32000, 5120}};

  try {
    const Bandwidth bw = measure_bandwidth(static_cast<uint64_t>(stream_mib) << 20, runs);

    std::vector<Row> rows;
    double checksum = 0;
    for (const Shape& s : kShapes) {
      const std::vector<float> x = [&] {
        std::vector<float> v(static_cast<size_t>(tokens * s.k));
        std::mt19937 rng(7);
        std::uniform_real_distribution<float> d(-1.0f, 1.0f);
        for (auto& e : v) e = d(rng);
        return v;
      }();
      std::vector<float> y(static_cast<size_t>(tokens * s.n));
      for (GgmlType t : types) {
        const uint64_t bytes = ferry::row_bytes(t, s.k) * static_cast<uint64_t>(s.n);
        const int copies =
            static_cast<int>(std::max<uint64_t>(2, ((static_cast<uint64_t>(pool_mib) << 20) + bytes - 1) / bytes));
        const std::vector<uint8_t> one = random_weight_bytes(bytes, 1);
        std::vector<uint8_t> pool(bytes * copies);
        tbb::parallel_for(0, copies, [&](int c) { std::memcpy(pool.data() + bytes * c, one.data(), bytes); });
        Row row{std::string(ferry::type_name(t)), s, bytes, copies, {}};
        int next = 0;
        row.seconds = stats_of(time_runs(runs, [&](int) {
          const ferry::QuantMatrixView w{t, pool.data() + bytes * (next++ % copies), s.k, s.n};
          ferry::cpu::matmul(w, x.data(), tokens, y.data());
        }));
        checksum += y[static_cast<size_t>(s.n / 3)];
        rows.push_back(row);
      }
    }

    const std::string cpu = cpu_model();
    std::printf("## CPU GEMV, T = %d\n\n", tokens);
    std::printf("cpu: %s; %d threads; build %s%s; median of %d runs after 1 warm-up; 1 GB = 1e9 B\n\n", cpu.c_str(),
                used_threads, FERRY_GIT_SHA, dirty_suffix(), runs);
    std::printf(
        "limit: parallel read %.1f GB/s (min .. max %.1f .. %.1f), parallel copy %.1f GB/s (read + write), "
        "over %lld MiB\n\n",
        bw.read_gbps(), static_cast<double>(bw.bytes) / bw.read_s.max / 1e9,
        static_cast<double>(bw.bytes) / bw.read_s.min / 1e9, bw.copy_gbps(), static_cast<long long>(stream_mib));
    std::printf("| N x K | type | MiB | ms (median) | GB/s (median) | GB/s (min .. max) | spread | of read bw |\n");
    std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const Row& r : rows) {
      const double b = static_cast<double>(r.bytes);
      std::printf("| %lld x %lld | %s | %.1f | %.3f | %.1f | %.1f .. %.1f | %.1f%% | %.1f%% |\n",
                  static_cast<long long>(r.shape.n), static_cast<long long>(r.shape.k), r.type.c_str(), b / (1 << 20),
                  r.seconds.median * 1e3, b / r.seconds.median / 1e9, b / r.seconds.max / 1e9, b / r.seconds.min / 1e9,
                  (r.seconds.max - r.seconds.min) / r.seconds.median * 100.0,
                  100.0 * b / r.seconds.median / 1e9 / bw.read_gbps());
    }
    std::printf("\n(checksum %.6g)\n", checksum);

    if (!json_path.empty()) {
      nlohmann::json j;
      j["benchmark"] = "cpu_gemv";
      j["build"] = build_json();
      j["device"] = {{"cpu_model", cpu}, {"threads", used_threads}};
      j["parameters"] = {{"tokens", tokens},         {"runs", runs},         {"warmup_runs", 1},
                         {"stream_mib", stream_mib}, {"pool_mib", pool_mib}, {"data", "random codes, finite scales"}};
      j["limit"] = {{"read_gbps_median", bw.read_gbps()},
                    {"copy_gbps_median", bw.copy_gbps()},
                    {"read_seconds", stats_json(bw.read_s)},
                    {"copy_seconds", stats_json(bw.copy_s)},
                    {"bytes", bw.bytes}};
      j["results"] = nlohmann::json::array();
      for (const Row& r : rows) {
        const double b = static_cast<double>(r.bytes);
        j["results"].push_back({
            {"n", r.shape.n},
            {"k", r.shape.k},
            {"type", r.type},
            {"bytes", r.bytes},
            {"copies_rotated", r.copies},
            {"seconds", stats_json(r.seconds)},
            {"gbps",
             {{"median", b / r.seconds.median / 1e9},
              {"min", b / r.seconds.max / 1e9},
              {"max", b / r.seconds.min / 1e9}}},
            {"spread_pct", (r.seconds.max - r.seconds.min) / r.seconds.median * 100.0},
            {"ratio_to_read_bw", b / r.seconds.median / 1e9 / bw.read_gbps()},
        });
      }
      if (!write_json_file(json_path, j)) {
        std::cerr << "cannot write " << json_path << "\n";
        return 1;
      }
    }
  } catch (const ferry::Error& e) {
    std::cerr << "bench_cpu_gemv: " << ferry::category_name(e.category()) << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
