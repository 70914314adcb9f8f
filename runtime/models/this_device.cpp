#include "ferry/models/this_device.hpp"

#include <fstream>
#include <sstream>

#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"
#include "ferry/models/default_model.hpp"
#include "ferry/offload/calibrate.hpp"
#include "ferry/offload/gpu.hpp"

namespace ferry {
namespace {

// The profile without rates: what is known without measuring anything but the CUDA context.
DeviceProfile identity() {
  DeviceProfile d;
  d.has_gpu = gpu_available();
  d.cpu = cpu_model_name();
  d.cpu_threads = cpu_thread_count();
  if (!d.has_gpu) return d;
  d.context_bytes = gpu_context_overhead_bytes();  // first GPU call: it must see the device before the context
  d.name = gpu_name();
  d.driver = gpu_driver();
  return d;
}

// Why a cached profile does not describe the machine `now`; empty when it does.
std::string mismatch(const DeviceProfile& cached, const DeviceProfile& now) {
  auto differs = [](const std::string& what, const std::string& a, const std::string& b) {
    return a == b ? std::string() : what + " '" + a + "' (cached) vs '" + b + "' (now)";
  };
  for (const std::string& why :
       {differs("GPU", cached.name, now.name), differs("driver", cached.driver, now.driver),
        differs("CPU", cached.cpu, now.cpu),
        differs("threads", std::to_string(cached.cpu_threads), std::to_string(now.cpu_threads))})
    if (!why.empty()) return why;
  if (!cached.has_rates()) return "it holds no complete set of measured rates";
  return "";
}

}  // namespace

std::filesystem::path device_profile_cache_path() { return ferry_cache_dir() / "device-profile.json"; }

CachedCalibration read_cached_calibration() {
  CachedCalibration c;
  const DeviceProfile now = identity();
  c.profile = now;
  const std::filesystem::path path = device_profile_cache_path();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    c.problem = "no calibration yet (" + path.string() + ")";
    return c;
  }
  std::ostringstream text;
  text << in.rdbuf();
  DeviceProfile cached;
  try {
    cached = DeviceProfile::from_json(text.str());
  } catch (const Error& e) {
    c.problem = path.string() + " is corrupt: " + e.what();
    return c;
  }
  if (const std::string why = mismatch(cached, now); !why.empty()) {
    c.problem = path.string() + " was made for another machine or is incomplete: " + why;
    return c;
  }
  cached.context_bytes = now.context_bytes;  // measured in this process: the current figure
  c.profile = cached;
  c.usable = true;
  return c;
}

DeviceProfile this_device_profile() { return read_cached_calibration().profile; }

DeviceProfile calibrate_this_device() {
  DeviceProfile p = identity();
  const CpuRates cpu = measure_cpu_rates();
  p.host_read_bytes_per_s = cpu.host_read_bytes_per_s;
  p.cpu_gemv_bytes_per_s = cpu.gemv_bytes_per_s;
  p.cpu_gemm_flops = cpu.gemm_flops;
  p.cpu_int8_flops = cpu.int8_flops;
  if (p.has_gpu) {
    const GpuRates gpu = measure_gpu_rates();
    for (const auto& [bytes, rate] : gpu.link) p.link.push_back({bytes, rate});
    p.gpu_gemv_bytes_per_s = gpu.gemv_bytes_per_s;
    p.gpu_gemm_flops = gpu.gemm_flops;
  }
  const std::filesystem::path path = device_profile_cache_path();
  std::filesystem::create_directories(path.parent_path());
  AtomicFile out(path);
  const std::string json = p.to_json() + "\n";
  out.write(std::as_bytes(std::span(json)));
  out.commit();
  return p;
}

}  // namespace ferry
