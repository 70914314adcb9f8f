// The context-overhead measurement (see ferry/offload/device_memory.hpp). NVML and the driver API are reached through
// dlopen so that a CUDA build still loads and runs its CPU paths on a machine without the NVIDIA driver.
#include "ferry/offload/device_memory.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <unistd.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ferry/kernels/cuda/check.cuh"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/gpu.hpp"

namespace ferry {
namespace {

// The few NVML declarations used, as in nvml.h (stable ABI since NVML 5).
struct NvmlDevice;
struct NvmlMemory {
  unsigned long long total, free, used;
};
using NvmlInit = int (*)();
using NvmlShutdown = int (*)();
using NvmlCount = int (*)(unsigned int*);
using NvmlByIndex = int (*)(unsigned int, NvmlDevice**);
using NvmlByBusId = int (*)(const char*, NvmlDevice**);
using NvmlMemoryInfo = int (*)(NvmlDevice*, NvmlMemory*);
struct NvmlProcessInfo {  // nvmlProcessInfo_t of the _v2/_v3 process queries
  unsigned int pid;
  unsigned long long used_gpu_memory;
  unsigned int gpu_instance_id, compute_instance_id;
};
using NvmlProcesses = int (*)(NvmlDevice*, unsigned int*, NvmlProcessInfo*);
using NvmlDriverVersion = int (*)(char*, unsigned int);
constexpr int kNvmlInsufficientSize = 7;
constexpr unsigned long long kNvmlValueNotAvailable = ~0ull;

class Nvml {
 public:
  Nvml() {
    m_lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (m_lib == nullptr) return;
    auto init = reinterpret_cast<NvmlInit>(dlsym(m_lib, "nvmlInit_v2"));
    m_shutdown = reinterpret_cast<NvmlShutdown>(dlsym(m_lib, "nvmlShutdown"));
    m_count = reinterpret_cast<NvmlCount>(dlsym(m_lib, "nvmlDeviceGetCount_v2"));
    m_by_index = reinterpret_cast<NvmlByIndex>(dlsym(m_lib, "nvmlDeviceGetHandleByIndex_v2"));
    m_by_bus = reinterpret_cast<NvmlByBusId>(dlsym(m_lib, "nvmlDeviceGetHandleByPciBusId_v2"));
    m_memory = reinterpret_cast<NvmlMemoryInfo>(dlsym(m_lib, "nvmlDeviceGetMemoryInfo"));
    m_processes = reinterpret_cast<NvmlProcesses>(dlsym(m_lib, "nvmlDeviceGetComputeRunningProcesses_v3"));
    if (m_processes == nullptr)
      m_processes = reinterpret_cast<NvmlProcesses>(dlsym(m_lib, "nvmlDeviceGetComputeRunningProcesses_v2"));
    m_driver = reinterpret_cast<NvmlDriverVersion>(dlsym(m_lib, "nvmlSystemGetDriverVersion"));
    m_ok = init && m_shutdown && m_count && m_by_index && m_by_bus && m_memory && init() == 0;
  }
  ~Nvml() {
    if (m_ok) m_shutdown();
    if (m_lib != nullptr) dlclose(m_lib);
  }
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;

  bool ok() const { return m_ok; }
  // Free memory of every device NVML sees, by handle.
  std::vector<std::pair<NvmlDevice*, uint64_t>> free_all() const {
    std::vector<std::pair<NvmlDevice*, uint64_t>> out;
    unsigned count = 0;
    if (m_count(&count) != 0) return out;
    for (unsigned i = 0; i < count; ++i) {
      NvmlDevice* d = nullptr;
      NvmlMemory m{};
      if (m_by_index(i, &d) == 0 && m_memory(d, &m) == 0) out.emplace_back(d, m.free);
    }
    return out;
  }
  NvmlDevice* by_bus_id(const char* bus) const {
    NvmlDevice* d = nullptr;
    return m_by_bus(bus, &d) == 0 ? d : nullptr;
  }
  // The device memory process `pid` holds on `d`; nullopt when NVML does not account per process here.
  std::optional<uint64_t> used_by(NvmlDevice* d, unsigned pid) const {
    if (m_processes == nullptr) return std::nullopt;
    std::vector<NvmlProcessInfo> infos(64);
    for (int attempt = 0; attempt < 4; ++attempt) {
      unsigned count = static_cast<unsigned>(infos.size());
      const int status = m_processes(d, &count, infos.data());
      if (status == kNvmlInsufficientSize) {
        infos.resize(static_cast<size_t>(count) * 2 + 16);
        continue;
      }
      if (status != 0) return std::nullopt;
      for (unsigned i = 0; i < count; ++i)
        if (infos[i].pid == pid)
          return infos[i].used_gpu_memory == kNvmlValueNotAvailable ? std::nullopt
                                                                    : std::optional<uint64_t>(infos[i].used_gpu_memory);
      return uint64_t{0};  // listed nowhere: holds nothing on this device
    }
    return std::nullopt;
  }
  // The NVIDIA driver's version ("570.124.06"); empty when NVML cannot say.
  std::string driver_version() const {
    char text[96] = {};
    if (!m_ok || m_driver == nullptr || m_driver(text, sizeof text) != 0) return {};
    return text;
  }
  bool free_of(NvmlDevice* d, uint64_t* free) const {
    NvmlMemory m{};
    if (m_memory(d, &m) != 0) return false;
    *free = m.free;
    return true;
  }

 private:
  void* m_lib = nullptr;
  bool m_ok = false;
  NvmlShutdown m_shutdown = nullptr;
  NvmlCount m_count = nullptr;
  NvmlByIndex m_by_index = nullptr;
  NvmlByBusId m_by_bus = nullptr;
  NvmlMemoryInfo m_memory = nullptr;
  NvmlProcesses m_processes = nullptr;
  NvmlDriverVersion m_driver = nullptr;
};

// This process's device as an NVML handle (the current CUDA device, matched by PCI bus id), or null.
NvmlDevice* current_nvml_device(const Nvml& nvml) {
  int device = 0;
  char bus[32] = {};
  if (!nvml.ok() || cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetPCIBusId(bus, sizeof bus, device) != cudaSuccess)
    return nullptr;
  return nvml.by_bus_id(bus);
}

// Whether the device's primary context already exists (then "before" would not be before). Unknown counts as no.
bool primary_context_active(int ordinal) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return false;
  using Init = int (*)(unsigned);
  using Get = int (*)(int*, int);
  using State = int (*)(int, unsigned*, int*);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
  auto state = reinterpret_cast<State>(dlsym(lib, "cuDevicePrimaryCtxGetState"));
  int device = 0, active = 0;
  unsigned flags = 0;
  const bool known =
      init && get && state && init(0) == 0 && get(&device, ordinal) == 0 && state(device, &flags, &active) == 0;
  dlclose(lib);
  return known && active != 0;
}

DeviceMemoryBaseline measure() {
  if (!gpu_available()) fail(ErrorCategory::UNSUPPORTED, "device memory baseline: " + gpu_unavailable_reason());
  DeviceMemoryBaseline b;
  FERRY_CUDA_CHECK(cudaGetDevice(&b.device));  // does not create the context (cudaSetDevice would, since CUDA 12)
  Nvml nvml;
  const bool existed = primary_context_active(b.device);
  const auto before = nvml.ok() && !existed ? nvml.free_all() : std::vector<std::pair<NvmlDevice*, uint64_t>>{};

  FERRY_CUDA_CHECK(cudaFree(nullptr));  // creates the primary context
  // What every scheduler adds on top of the context before its arena: a cuBLAS handle and two streams.
  const cuda::CublasHandle probe_handle = cuda::CublasHandle::create();
  const cuda::Stream probe_compute = cuda::Stream::create();
  const cuda::Stream probe_copy = cuda::Stream::create();
  FERRY_CUDA_CHECK(cudaDeviceSynchronize());
  size_t free_now = 0, total = 0;
  FERRY_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
  b.total_bytes = total;

  char bus[32] = {};
  NvmlDevice* mine = nullptr;
  if (!before.empty() && cudaDeviceGetPCIBusId(bus, sizeof bus, b.device) == cudaSuccess) mine = nvml.by_bus_id(bus);
  for (const auto& [handle, free_before] : before) {
    uint64_t free_after = 0;
    if (handle == mine && nvml.free_of(handle, &free_after)) {
      b.free_before_context = free_before;
      b.free_after_context = free_after;
      b.context_bytes = free_before > free_after ? free_before - free_after : 0;
      b.method = "NVML free memory before vs after creating the context, a cuBLAS handle and two streams";
      return b;
    }
  }
  b.free_after_context = free_now;
  b.context_bytes = total - free_now;
  b.method = existed ? "total minus free (the context existed before the first measurement)"
                     : "total minus free (NVML unavailable): includes other processes, so an overestimate";
  return b;
}

}  // namespace

const DeviceMemoryBaseline& device_memory_baseline() {
  static const DeviceMemoryBaseline baseline = measure();
  return baseline;
}

std::optional<uint64_t> process_device_bytes() {
  static const Nvml nvml;  // dlopen and nvmlInit once per process
  static std::mutex mutex;
  const std::lock_guard lock(mutex);
  NvmlDevice* device = current_nvml_device(nvml);
  if (device == nullptr) return std::nullopt;
  return nvml.used_by(device, static_cast<unsigned>(::getpid()));
}

std::string driver_version() {
  {
    const Nvml nvml;
    if (std::string v = nvml.driver_version(); !v.empty()) return v;
  }
  int version = 0;
  if (cudaDriverGetVersion(&version) != cudaSuccess || version == 0) {
    cudaGetLastError();
    return {};
  }
  return "CUDA driver API " + std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

uint64_t device_free_bytes() {
  size_t free_now = 0, total = 0;
  FERRY_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
  return free_now;
}

}  // namespace ferry
