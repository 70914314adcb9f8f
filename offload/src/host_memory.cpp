#include "ferry/offload/host_memory.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace ferry {
namespace {

// The value of `key` (in kB) in a /proc file of "Key:   value kB" lines; 0 when absent.
uint64_t proc_kib(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0 || line.size() <= key.size() || line[key.size()] != ':') continue;
    std::istringstream fields(line.substr(key.size() + 1));
    uint64_t kib = 0;
    if (fields >> kib) return kib;
  }
  return 0;
}

// A cgroup v2 file holding one number or "max"; UINT64_MAX for "max" or when unreadable.
uint64_t cgroup_value(const std::string& dir, const char* name) {
  std::ifstream in(dir + "/" + name);
  std::string text;
  if (!(in >> text) || text == "max") return UINT64_MAX;
  try {
    return std::stoull(text);
  } catch (...) {
    return UINT64_MAX;
  }
}

// The process's cgroup v2 folder ("0::/path" in /proc/self/cgroup), or empty.
std::string cgroup_dir() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return "/sys/fs/cgroup" + line.substr(3);
  return {};
}

}  // namespace

HostMemoryAvailable host_memory_available() {
  HostMemoryAvailable best;
  best.source = "unknown";
  auto consider = [&best](uint64_t bytes, std::string source) {
    if (bytes < best.bytes) best = {bytes, std::move(source)};
  };
  if (const uint64_t kib = proc_kib("/proc/meminfo", "MemAvailable"); kib > 0)
    consider(kib * 1024, "MemAvailable in /proc/meminfo");
  rlimit as{};
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
    const uint64_t used = proc_kib("/proc/self/status", "VmSize") * 1024;
    consider(as.rlim_cur > used ? as.rlim_cur - used : 0, "the address-space limit (ulimit -v) less what is mapped");
  }
  if (const std::string dir = cgroup_dir(); !dir.empty()) {
    const uint64_t limit = cgroup_value(dir, "memory.max");
    const uint64_t current = cgroup_value(dir, "memory.current");
    if (limit != UINT64_MAX && current != UINT64_MAX)
      consider(limit > current ? limit - current : 0, "the cgroup memory limit (memory.max) less its usage");
  }
  return best;
}

}  // namespace ferry
