// How much host memory this process can still take, so a plan that needs more is refused with the numbers before
// anything is allocated. Linux overcommits: a large allocation succeeds and the process is killed later, when the
// pages are touched, so checking the allocation's result is not enough.
#pragma once

#include <cstdint>
#include <string>

namespace ferry {

struct HostMemoryAvailable {
  uint64_t bytes = UINT64_MAX;  // the smallest of the limits below that applies
  std::string source;           // which limit that is, e.g. "MemAvailable in /proc/meminfo"
};

// The least of: MemAvailable (/proc/meminfo), the address-space limit (RLIMIT_AS) less the process's current virtual
// size, and the cgroup v2 memory limit less its current usage. UINT64_MAX with source "unknown" when none can be read.
HostMemoryAvailable host_memory_available();

}  // namespace ferry
