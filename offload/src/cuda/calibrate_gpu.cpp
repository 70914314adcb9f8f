// The GPU half of `ferry calibrate`: the pinned host->device link by copy size, and ferry's GPU matmul at one token
// (GEMV, per weight type) and at 512 tokens (dequantize to FP16 + cuBLAS GEMM). Timed with CUDA events on one
// non-blocking stream, median of several runs after a warm-up.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/offload/calibrate.hpp"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/host_pool.hpp"

namespace ferry {
namespace {

constexpr int kRuns = 9;
constexpr int64_t kCols = 4096;
constexpr uint64_t kMatrixBytes = uint64_t{128} << 20;  // beyond the H200's 60 MiB L2: the weights come from HBM

// Median milliseconds of `fn` enqueued on `stream`, between timing events.
template <class Fn>
double median_ms(cudaStream_t stream, Fn&& fn) {
  fn();
  FERRY_CUDA_CHECK(cudaStreamSynchronize(stream));
  const cuda::Event start = cuda::Event::create(true), stop = cuda::Event::create(true);
  std::vector<double> ms;
  for (int i = 0; i < kRuns; ++i) {
    FERRY_CUDA_CHECK(cudaEventRecord(start.get(), stream));
    fn();
    FERRY_CUDA_CHECK(cudaEventRecord(stop.get(), stream));
    FERRY_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    ms.push_back(cuda::elapsed_ms(start, stop));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

GpuRates measure_gpu_rates() {
  if (!gpu_available()) fail(ErrorCategory::UNSUPPORTED, "calibrate: no GPU (" + gpu_unavailable_reason() + ")");
  GpuRates r;
  r.driver = driver_version();
  const cuda::Stream stream = cuda::Stream::create();
  const cuda::CublasHandle cublas = cuda::CublasHandle::create();
  FERRY_CUBLAS_CHECK(cublasSetStream(cublas.get(), stream.get()));

  {  // the link: one pinned buffer copied in pieces of each size
    constexpr uint64_t kLargest = uint64_t{256} << 20;
    std::string failure;
    const detail::HostBlock host = detail::HostBlock::allocate(kLargest, true, false, &failure);
    if (!host.pinned())
      fail(ErrorCategory::CUDA, "calibrate: cannot pin " + std::to_string(kLargest) + " bytes: " + failure);
    std::memset(host.data(), 0x5A, kLargest);
    const cuda::DeviceBuffer device = cuda::DeviceBuffer::allocate(kLargest);
    for (uint64_t bytes : {uint64_t{1} << 20, uint64_t{4} << 20, uint64_t{16} << 20, uint64_t{64} << 20, kLargest}) {
      const double ms = median_ms(stream.get(), [&] {
        for (uint64_t off = 0; off < kLargest; off += bytes)
          FERRY_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::byte*>(device.data()) + off, host.data() + off, bytes,
                                           cudaMemcpyHostToDevice, stream.get()));
      });
      r.link.emplace_back(bytes, static_cast<double>(kLargest) / (ms / 1e3));
    }
  }

  const cuda::DeviceBuffer x = cuda::DeviceBuffer::allocate(512 * kCols * sizeof(float));
  {
    std::vector<float> hx(512 * kCols);
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (float& v : hx) v = uniform(rng);
    FERRY_CUDA_CHECK(cudaMemcpy(x.data(), hx.data(), hx.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  const cuda::DeviceBuffer workspace = cuda::DeviceBuffer::allocate(cuda::kGemmWorkspaceBytes);
  auto scratch_for = [&](const cuda::DeviceBuffer& weight_tile, const cuda::DeviceBuffer& activations) {
    cuda::GemmScratch s;
    s.weight = static_cast<__half*>(weight_tile.data());
    s.weight_elems = weight_tile.size() / sizeof(__half);
    s.activations = static_cast<__half*>(activations.data());
    s.activation_elems = activations.size() / sizeof(__half);
    s.workspace = workspace.data();
    s.workspace_bytes = workspace.size();
    return s;
  };

  for (const std::string& name : calibrated_type_names()) {
    const GgmlType type = *parse_type_name(name);
    const int64_t rows = static_cast<int64_t>(kMatrixBytes / row_bytes(type, kCols));
    const std::vector<std::byte> host = calibration_matrix(name, rows, kCols);
    const cuda::DeviceBuffer w = cuda::DeviceBuffer::allocate(host.size());
    FERRY_CUDA_CHECK(cudaMemcpy(w.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
    const QuantMatrixView view{type, w.data(), kCols, rows};
    const cuda::DeviceBuffer y = cuda::DeviceBuffer::allocate(static_cast<size_t>(rows) * sizeof(float));
    const cuda::DeviceBuffer tile = cuda::DeviceBuffer::allocate(device_sizing::gemm_min_weight_scratch(view) * 2);
    const cuda::DeviceBuffer act = cuda::DeviceBuffer::allocate(device_sizing::gemm_activation_scratch(view, 1) * 2);
    const cuda::GemmScratch scratch = scratch_for(tile, act);
    const double ms = median_ms(stream.get(), [&] {
      cuda::matmul(view, static_cast<const float*>(x.data()), 1, static_cast<float*>(y.data()), scratch, cublas.get(),
                   stream.get());
    });
    r.gemv_bytes_per_s[name] = static_cast<double>(host.size()) / (ms / 1e3);
  }

  {  // a prompt step: 4096 x 4096 Q4_0 at 512 tokens, through the scratch the scheduler would give it
    constexpr int64_t kRows = 4096, kTokens = 512;
    const std::vector<std::byte> host = calibration_matrix("Q4_0", kRows, kCols);
    const cuda::DeviceBuffer w = cuda::DeviceBuffer::allocate(host.size());
    FERRY_CUDA_CHECK(cudaMemcpy(w.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
    const QuantMatrixView view{GgmlType::Q4_0, w.data(), kCols, kRows};
    const cuda::DeviceBuffer y = cuda::DeviceBuffer::allocate(static_cast<size_t>(kRows * kTokens) * sizeof(float));
    const cuda::DeviceBuffer tile = cuda::DeviceBuffer::allocate(
        std::max<size_t>(device_sizing::gemm_min_weight_scratch(view), size_t{32} << 20) * 2);
    const cuda::DeviceBuffer act =
        cuda::DeviceBuffer::allocate(device_sizing::gemm_activation_scratch(view, kTokens) * 2);
    const cuda::GemmScratch scratch = scratch_for(tile, act);
    const double ms = median_ms(stream.get(), [&] {
      cuda::matmul(view, static_cast<const float*>(x.data()), kTokens, static_cast<float*>(y.data()), scratch,
                   cublas.get(), stream.get());
    });
    r.gemm_flops = 2.0 * kRows * kCols * kTokens / (ms / 1e3);
  }
  return r;
}

}  // namespace ferry
