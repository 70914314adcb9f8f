// Measurements of this machine for the cost model (`ferry calibrate`): the rates at which the CPU kernels read
// quantized weights (GEMV, one token) and do a prompt's arithmetic (GEMM), the host's read bandwidth, and with a GPU
// the pinned host->device link by copy size and the GPU kernels' rates. Each is timed the way the runtime uses it
// (ferry's own kernels on ferry's own data layouts), median of several runs after a warm-up, in a few seconds overall.
// Plain C++: the CUDA side lives in src/cuda/calibrate_gpu.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ferry {

struct CpuRates {
  std::string cpu;  // /proc/cpuinfo's model name ("unknown" where there is none)
  int threads = 0;  // oneTBB's concurrency: the threads the kernels ran on
  double host_read_bytes_per_s = 0.0;
  std::map<std::string, double> gemv_bytes_per_s;  // by GGML type name ("Q4_0")
  double gemm_flops = 0.0;                         // Q4_0 weights, a 128-token step (the Eigen tiles)
  double int8_flops = 0.0;                         // Q4_0 weights, a 64-token step (the int8 path in groups)
};
CpuRates measure_cpu_rates();

struct GpuRates {
  std::string driver;
  std::vector<std::pair<uint64_t, double>> link;  // (bytes per copy, bytes/s), pinned host->device, ascending
  std::map<std::string, double> gemv_bytes_per_s;
  double gemm_flops = 0.0;  // Q4_0 weights dequantized to FP16 and multiplied at a 512-token step
};
// UNSUPPORTED without a usable GPU (or in a build without CUDA). Allocates its own device and pinned memory (about
// 600 MiB, freed before it returns): calibration runs before a model is loaded, outside any budget.
GpuRates measure_gpu_rates();

// This machine's CPU as a calibration names it: /proc/cpuinfo's model name, and oneTBB's thread count.
std::string cpu_model_name();
int cpu_thread_count();

// The weights a rate is measured on: rows x cols of one row quantized from Gaussian values, repeated. Real FP16 scales
// (random bytes would give subnormal or NaN scales, which some CPUs compute slowly); one quantization, so building a
// matrix of DRAM size takes milliseconds even for the k-quants.
std::vector<std::byte> calibration_matrix(const std::string& type_name, int64_t rows, int64_t cols);

// The types the CPU and GPU rates are measured for: those real quantized files use for most of their bytes.
const std::vector<std::string>& calibrated_type_names();

}  // namespace ferry
