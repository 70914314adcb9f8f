// Helpers every benchmark shares: run statistics, wall-clock timing of repeated runs, the CPU model, the build's
// identity and the JSON pieces built from them, and writing the JSON report. Header-only; not a library header.
// The JSON field names here are read by other tooling: change them only together with that tooling.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

// The build's identity, passed by bench/CMakeLists.txt (read at configure time).
#ifndef FERRY_GIT_SHA
#define FERRY_GIT_SHA "unknown"
#endif
#ifndef FERRY_GIT_DIRTY
#define FERRY_GIT_DIRTY 0
#endif

namespace ferry::bench {

using Clock = std::chrono::steady_clock;

// Median (mean of the middle two for an even count), min and max of a set of runs, usually seconds.
struct Stats {
  double median = 0, min = 0, max = 0;
};

inline Stats stats_of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return {n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]), v.front(), v.back()};
}

// (max - min) / median in percent: how much the runs disagree.
inline double spread_pct(const Stats& s) { return (s.max - s.min) / s.median * 100.0; }

// {"median": .., "min": .., "max": ..}: the CPU benchmarks' form of a Stats in JSON.
inline nlohmann::json stats_json(const Stats& s) { return {{"median", s.median}, {"min", s.min}, {"max", s.max}}; }

// Wall-clock seconds of each of `runs` calls after one warm-up call. fn takes the run index (-1 for the warm-up)
// when it accepts an int, else nothing.
template <class Fn>
std::vector<double> time_runs(int runs, Fn&& fn) {
  auto call = [&fn](int run) {
    if constexpr (std::is_invocable_v<Fn&, int>)
      fn(run);
    else
      fn();
  };
  call(-1);
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    call(r);
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return t;
}

// The "model name" line of /proc/cpuinfo, or "unknown".
inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

// " (dirty)" when the build had uncommitted changes, for the human-readable header lines.
inline const char* dirty_suffix() { return FERRY_GIT_DIRTY ? " (dirty)" : ""; }

// The "build" object of the CPU benchmarks' JSON: git_sha, git_dirty, compiler.
inline nlohmann::json build_json() {
  return {{"git_sha", FERRY_GIT_SHA}, {"git_dirty", FERRY_GIT_DIRTY != 0}, {"compiler", __VERSION__}};
}

// The "build" object of the GPU benchmarks' JSON: git_sha, dirty.
inline nlohmann::json gpu_build_json() { return {{"git_sha", FERRY_GIT_SHA}, {"dirty", FERRY_GIT_DIRTY != 0}}; }

// The "host" object of the one-thread CPU benchmarks: cpu_model, hardware_threads.
inline nlohmann::json host_json(const std::string& cpu) {
  return {{"cpu_model", cpu}, {"hardware_threads", std::thread::hardware_concurrency()}};
}

// Writes the report (2-space indent, final newline). False when the file cannot be written; the caller decides what
// that means for its exit status.
inline bool write_json_file(const std::string& path, const nlohmann::json& j) {
  std::ofstream f(path);
  f << j.dump(2) << "\n";
  return static_cast<bool>(f);
}

// sum (a - b)^2 / sum b^2 (plain sum (a - b)^2 when b is all zeros): a kernel's output `a` against a reference `b`.
inline double normalized_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return den == 0 ? num : num / den;
}

// 64-bit LCG: fast enough for ~10^8 values, never constant.
struct Lcg {
  uint64_t x;
  explicit Lcg(uint64_t seed) : x(seed * 6364136223846793005ull + 1442695040888963407ull) {}
  uint64_t next() { return x = x * 6364136223846793005ull + 1442695040888963407ull; }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() >> 40) / 16777216.0f; }
};

}  // namespace ferry::bench
