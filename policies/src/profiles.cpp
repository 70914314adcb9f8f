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

std::string DeviceProfile::to_json() const {
  nlohmann::json j;
  j["name"] = name;
  j["has_gpu"] = has_gpu;
  j["context_bytes"] = context_bytes;
  return j.dump(2);
}

DeviceProfile DeviceProfile::from_json(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCategory::FORMAT, std::string("device profile: not JSON: ") + e.what());
  }
  DeviceProfile p;
  auto field = [&](const char* key, auto& out) {
    if (!j.is_object() || !j.contains(key))
      fail(ErrorCategory::FORMAT, std::string("device profile: field '") + key + "' is missing");
    try {
      j.at(key).get_to(out);
    } catch (const nlohmann::json::exception&) {
      fail(ErrorCategory::FORMAT, std::string("device profile: field '") + key + "' has the wrong type");
    }
  };
  field("name", p.name);
  field("has_gpu", p.has_gpu);
  field("context_bytes", p.context_bytes);
  return p;
}

}  // namespace ferry
