#include <algorithm>
#include <nlohmann/json.hpp>

#include "ferry/error.hpp"
#include "ferry/policies/device_profile.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

uint64_t StackProfile::weight_bytes() const noexcept {
  uint64_t total = 0;
  for (const LayerDemand& l : layers) total += l.weight_bytes;
  return total;
}

bool DeviceProfile::has_rates() const noexcept {
  // Every rate a prediction divides by must be positive (from_json refuses a zero among them; a profile built in code
  // may still hold one).
  auto positive = [](const std::map<std::string, double>& rates) {
    if (rates.empty()) return false;
    for (const auto& [type, r] : rates)
      if (!(r > 0.0)) return false;
    return true;
  };
  const bool cpu_rates = positive(cpu_gemv_bytes_per_s) && cpu_gemm_flops > 0.0;
  bool link_rates = !link.empty();
  for (const LinkPoint& p : link) link_rates = link_rates && p.bytes_per_s > 0.0;
  const bool gpu_rates = link_rates && positive(gpu_gemv_bytes_per_s) && gpu_gemm_flops > 0.0;
  return cpu_rates && (!has_gpu || gpu_rates);
}

double DeviceProfile::link_rate(uint64_t bytes) const noexcept {
  if (link.empty()) return 0.0;
  double rate = link.front().bytes_per_s;
  for (const LinkPoint& p : link)
    if (p.bytes <= bytes) rate = p.bytes_per_s;
  return rate;
}

std::string DeviceProfile::to_json() const {
  nlohmann::json j;
  j["name"] = name;
  j["has_gpu"] = has_gpu;
  j["context_bytes"] = context_bytes;
  j["driver"] = driver;
  j["cpu"] = cpu;
  j["cpu_threads"] = cpu_threads;
  j["host_read_bytes_per_s"] = host_read_bytes_per_s;
  nlohmann::json link_points = nlohmann::json::array();
  for (const LinkPoint& p : link) link_points.push_back({{"bytes", p.bytes}, {"bytes_per_s", p.bytes_per_s}});
  j["link"] = link_points;
  j["cpu_gemv_bytes_per_s"] = cpu_gemv_bytes_per_s;
  j["cpu_gemm_flops"] = cpu_gemm_flops;
  j["cpu_int8_flops"] = cpu_int8_flops;
  j["gpu_gemv_bytes_per_s"] = gpu_gemv_bytes_per_s;
  j["gpu_gemm_flops"] = gpu_gemm_flops;
  return j.dump(2);
}

DeviceProfile DeviceProfile::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCategory::FORMAT, std::string("device profile: not JSON: ") + e.what());
  }
  if (!j.is_object()) fail(ErrorCategory::FORMAT, "device profile: not a JSON object");
  DeviceProfile p;
  auto read = [&](const char* key, auto& out, bool required) {
    if (!j.contains(key)) {
      if (required) fail(ErrorCategory::FORMAT, std::string("device profile: field '") + key + "' is missing");
      return;
    }
    try {
      j.at(key).get_to(out);
    } catch (const nlohmann::json::exception&) {
      fail(ErrorCategory::FORMAT, std::string("device profile: field '") + key + "' has the wrong type");
    }
  };
  read("name", p.name, true);
  read("has_gpu", p.has_gpu, true);
  read("context_bytes", p.context_bytes, true);
  read("driver", p.driver, false);
  read("cpu", p.cpu, false);
  read("cpu_threads", p.cpu_threads, false);
  read("host_read_bytes_per_s", p.host_read_bytes_per_s, false);
  read("cpu_gemv_bytes_per_s", p.cpu_gemv_bytes_per_s, false);
  read("cpu_gemm_flops", p.cpu_gemm_flops, false);
  read("cpu_int8_flops", p.cpu_int8_flops, false);
  read("gpu_gemv_bytes_per_s", p.gpu_gemv_bytes_per_s, false);
  read("gpu_gemm_flops", p.gpu_gemm_flops, false);
  if (j.contains("link")) {
    const nlohmann::json& points = j.at("link");
    if (!points.is_array()) fail(ErrorCategory::FORMAT, "device profile: field 'link' has the wrong type");
    for (const nlohmann::json& point : points) {
      LinkPoint lp;
      try {
        point.at("bytes").get_to(lp.bytes);
        point.at("bytes_per_s").get_to(lp.bytes_per_s);
      } catch (const nlohmann::json::exception&) {
        fail(ErrorCategory::FORMAT, "device profile: field 'link' needs {\"bytes\", \"bytes_per_s\"} entries");
      }
      if (!p.link.empty() && lp.bytes <= p.link.back().bytes)
        fail(ErrorCategory::FORMAT, "device profile: field 'link' must list copy sizes in ascending order");
      p.link.push_back(lp);
    }
  }
  // A rate is a measurement: a negative or non-finite one is a corrupt profile, not a slow machine.
  auto check_rate = [](const std::string& field, double v) {
    if (!(v >= 0.0) || v > 1e18)
      fail(ErrorCategory::FORMAT, "device profile: field '" + field + "' holds " + std::to_string(v) +
                                      ", not a rate (a non-negative finite number)");
  };
  check_rate("host_read_bytes_per_s", p.host_read_bytes_per_s);
  check_rate("cpu_gemm_flops", p.cpu_gemm_flops);
  check_rate("cpu_int8_flops", p.cpu_int8_flops);
  check_rate("gpu_gemm_flops", p.gpu_gemm_flops);
  // A listed rate was measured: zero would be a division by zero in the cost model, not a slow machine. (The scalar
  // rates above may be 0: not measured.)
  auto check_measured = [&](const std::string& field, double v) {
    check_rate(field, v);
    if (v == 0.0) fail(ErrorCategory::FORMAT, "device profile: field '" + field + "' holds 0, not a measured rate");
  };
  for (const LinkPoint& lp : p.link) check_measured("link", lp.bytes_per_s);
  for (const auto& [type, v] : p.cpu_gemv_bytes_per_s) check_measured("cpu_gemv_bytes_per_s." + type, v);
  for (const auto& [type, v] : p.gpu_gemv_bytes_per_s) check_measured("gpu_gemv_bytes_per_s." + type, v);
  return p;
}

DeviceProfile link_capped(const DeviceProfile& device, double gbps) {
  if (gbps <= 0.0) return device;
  DeviceProfile paced = device;
  const double cap = gbps * 1e9;
  if (paced.link.empty()) paced.link.push_back({uint64_t{1} << 20, cap});
  for (LinkPoint& p : paced.link) p.bytes_per_s = std::min(p.bytes_per_s, cap);
  return paced;
}

}  // namespace ferry
