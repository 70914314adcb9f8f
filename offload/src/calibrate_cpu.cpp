#include <tbb/blocked_range.h>
#include <tbb/info.h>
#include <tbb/parallel_reduce.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "ferry/offload/calibrate.hpp"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRuns = 7;                               // timed runs per measurement; the median is kept
constexpr uint64_t kMatrixBytes = uint64_t{64} << 20;  // well beyond every CPU cache: the weights stream from DRAM
constexpr int64_t kCols = 4096;

template <class Fn>
double median_seconds(Fn&& fn) {
  fn();  // warm-up: first-touch page faults, thread pool start
  std::vector<double> s;
  for (int i = 0; i < kRuns; ++i) {
    const auto t0 = Clock::now();
    fn();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(s.begin(), s.end());
  return s[s.size() / 2];
}

}  // namespace

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

int cpu_thread_count() { return tbb::info::default_concurrency(); }

std::vector<std::byte> calibration_matrix(const std::string& type_name, int64_t rows, int64_t cols) {
  const GgmlType type = *parse_type_name(type_name);
  std::vector<float> values(static_cast<size_t>(cols));
  std::mt19937_64 rng(20261204);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (float& v : values) v = normal(rng);
  const uint64_t rb = row_bytes(type, cols);
  std::vector<std::byte> row(rb);
  ref::quantize(type, values.data(), row.data(), cols);
  std::vector<std::byte> m(rb * static_cast<uint64_t>(rows));
  for (int64_t r = 0; r < rows; ++r) std::memcpy(m.data() + r * rb, row.data(), rb);
  return m;
}

namespace {

double host_read_rate() {
  std::vector<uint64_t> buffer((uint64_t{256} << 20) / sizeof(uint64_t));
  for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = i * 0x9E3779B97F4A7C15ull;
  uint64_t sink = 0;
  const double s = median_seconds([&] {
    sink += tbb::parallel_reduce(
        tbb::blocked_range<size_t>(0, buffer.size(), 1 << 16), uint64_t{0},
        [&](const tbb::blocked_range<size_t>& r, uint64_t acc) {
          for (size_t i = r.begin(); i != r.end(); ++i) acc ^= buffer[i];
          return acc;
        },
        [](uint64_t a, uint64_t b) { return a ^ b; });
  });
  if (sink == 1) std::fputc('\0', stderr);  // keeps the reads from being optimised away
  return static_cast<double>(buffer.size() * sizeof(uint64_t)) / s;
}

}  // namespace

const std::vector<std::string>& calibrated_type_names() {
  static const std::vector<std::string> names = {"Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "F16"};
  return names;
}

// The token count of the GEMM measurement: the first past the int8 GEMV path, so it times the Eigen path.
constexpr int64_t kGemmTokens = 128;
static_assert(kGemmTokens > cpu::kCpuInt8MaxTokens);

CpuRates measure_cpu_rates() {
  CpuRates r;
  r.cpu = cpu_model_name();
  r.threads = cpu_thread_count();
  r.host_read_bytes_per_s = host_read_rate();
  std::vector<float> x(static_cast<size_t>(kGemmTokens * kCols)), y;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& v : x) v = uniform(rng);
  for (const std::string& name : calibrated_type_names()) {
    const GgmlType type = *parse_type_name(name);
    const int64_t rows = static_cast<int64_t>(kMatrixBytes / row_bytes(type, kCols));
    const std::vector<std::byte> m = calibration_matrix(name, rows, kCols);
    const QuantMatrixView w{type, m.data(), kCols, rows};
    y.assign(static_cast<size_t>(rows), 0.0f);
    const double s = median_seconds([&] { cpu::matmul(w, x.data(), 1, y.data()); });
    r.gemv_bytes_per_s[name] = static_cast<double>(m.size()) / s;
  }
  {  // The int8 path at its largest step: a 4096 x 4096 Q4_0 matrix at cpu::kCpuInt8MaxTokens tokens
    constexpr int64_t kRows = 4096, kTokens = cpu::kCpuInt8MaxTokens;
    static_assert(kTokens <= kGemmTokens);
    const std::vector<std::byte> m = calibration_matrix("Q4_0", kRows, kCols);
    const QuantMatrixView w{GgmlType::Q4_0, m.data(), kCols, kRows};
    y.assign(static_cast<size_t>(kRows * kTokens), 0.0f);
    const double s = median_seconds([&] { cpu::matmul(w, x.data(), kTokens, y.data()); });
    r.int8_flops = 2.0 * kRows * kCols * kTokens / s;
  }
  {  // GEMM: a 4096 x 4096 Q4_0 matrix at kGemmTokens (the Eigen path, past the fused GEMV's token counts)
    constexpr int64_t kRows = 4096, kTokens = kGemmTokens;
    const std::vector<std::byte> m = calibration_matrix("Q4_0", kRows, kCols);
    const QuantMatrixView w{GgmlType::Q4_0, m.data(), kCols, kRows};
    y.assign(static_cast<size_t>(kRows * kTokens), 0.0f);
    const double s = median_seconds([&] { cpu::matmul(w, x.data(), kTokens, y.data()); });
    r.gemm_flops = 2.0 * kRows * kCols * kTokens / s;
  }
  return r;
}

}  // namespace ferry
