// The CPU-only build's backend: no device, nothing to pin.
#include "backend.hpp"

namespace ferry::detail {

bool probe_gpu(std::string* reason) {
  *reason = "this build of ferry has no CUDA backend (configured with FERRY_CUDA=OFF or without a CUDA toolkit)";
  return false;
}

void* pinned_alloc(size_t, std::string* error) {
  *error = "no CUDA backend";
  return nullptr;
}

void pinned_free(void*) noexcept {}

uint64_t context_overhead_bytes() { return 0; }

std::string device_name() { return "none"; }

std::string driver_text() { return ""; }

}  // namespace ferry::detail
