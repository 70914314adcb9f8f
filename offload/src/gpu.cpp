#include "ferry/offload/gpu.hpp"

#include <mutex>

#include "backend.hpp"

namespace ferry {
namespace {

struct Probe {
  bool available = false;
  std::string reason;
};

const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    p.available = detail::probe_gpu(&p.reason);
    return p;
  }();
  return result;
}

}  // namespace

bool cuda_backend_built() noexcept {
#if defined(FERRY_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

bool gpu_available() noexcept {
  try {
    return probe().available;
  } catch (...) {
    return false;
  }
}

std::string gpu_unavailable_reason() { return probe().available ? std::string() : probe().reason; }

uint64_t gpu_context_overhead_bytes() { return detail::context_overhead_bytes(); }

std::string gpu_name() { return gpu_available() ? detail::device_name() : "none"; }

std::string gpu_driver() { return gpu_available() ? detail::driver_text() : ""; }

}  // namespace ferry
