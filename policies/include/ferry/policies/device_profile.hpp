// What a planner knows of the machine: whether a GPU is there, the CUDA context's memory overhead (measured by
// offload's device_memory_baseline on the machine itself), and the rates the cost model predicts times from, measured
// by `ferry calibrate` (runtime/app/cmd_calibrate.cpp): the pinned host->device link, the GPU's and the CPU's matrix
// kernels per weight type, the host's read bandwidth. Saved and loaded as JSON, so a plan can be made for another
// machine; a profile without rates (hand-written, or only the first three fields) still plans memory, it just cannot
// predict times.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ferry {

// One measured copy size of the link: bytes per copy and the rate reached.
struct LinkPoint {
  uint64_t bytes = 0;
  double bytes_per_s = 0.0;
};

struct DeviceProfile {
  std::string name = "none";  // the GPU's name, "none" without one
  bool has_gpu = false;
  uint64_t context_bytes = 0;  // device memory the CUDA context, a cuBLAS handle and two streams take

  // Measured rates; empty or 0 where not measured. Weight-reading rates are bytes of the quantized weight per second
  // at one token (GEMV: the decode regime); GEMM rates are floating-point operations per second at a prompt's token
  // count (the prefill regime).
  std::string driver;                                  // the GPU driver's version ("" without a GPU)
  std::string cpu;                                     // the CPU's model name
  int cpu_threads = 0;                                 // the threads the CPU kernels ran on
  double host_read_bytes_per_s = 0.0;                  // one pass over a large buffer by every thread
  std::vector<LinkPoint> link;                         // pinned host->device, by copy size (ascending)
  std::map<std::string, double> cpu_gemv_bytes_per_s;  // by GGML type name as ferry prints it ("Q4_0", "Q6_K")
  double cpu_gemm_flops = 0.0;
  // The CPU's int8 path (steps of more than kGemvMaxTokens and at most kCpuInt8MaxTokens tokens: the GEMV kernels
  // in token groups, cost_model.hpp); 0 where not measured (older profiles): the cost model then uses cpu_gemm_flops.
  double cpu_int8_flops = 0.0;
  std::map<std::string, double> gpu_gemv_bytes_per_s;
  double gpu_gemm_flops = 0.0;

  // Whether the rates a time prediction needs are there: the CPU's always, the link's and the GPU's with a GPU.
  bool has_rates() const noexcept;
  // The link's rate for copies of `bytes` (the nearest measured size at or below, else the smallest); 0 unmeasured.
  double link_rate(uint64_t bytes) const noexcept;

  std::string to_json() const;
  // Throws FORMAT naming the field for malformed JSON or values of the wrong type. The measured fields are optional.
  static DeviceProfile from_json(const std::string& text);
};

// The device as the cost model must see it under a simulated slower link (--link-gbps): every link rate capped at
// gbps, so `auto` does not stream as much as the real link would allow. gbps <= 0: the device unchanged.
DeviceProfile link_capped(const DeviceProfile& device, double gbps);

}  // namespace ferry
