#include "decode_graphs.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/positions.cuh"

namespace ferry::detail {

DecodeGraphs::DecodeGraphs(CudaOps& ops, cudaStream_t stream, int32_t* device_position, size_t n_layers,
                           WarningSink warn)
    : m_ops(ops), m_stream(stream), m_device_position(device_position), m_warn(std::move(warn)) {
  m_runs.resize(n_layers);
}

bool DecodeGraphs::applies(const StepContext& step) const {
  return !m_off && step.n_tokens == 1 && step.inputs.empty() && step.sequences.size() <= 1 &&
         (step.sequences.empty() || step.sequences[0].n_tokens == 1);
}

bool DecodeGraphs::run(size_t first, size_t last, const StepContext& step, int64_t position_limit, EnqueueRef enqueue) {
  if (!applies(step) || first >= m_runs.size() || last < first || last >= m_runs.size()) return false;
  const bool sequences = !step.sequences.empty();
  const int64_t position = sequences ? step.sequences[0].pos0 : step.pos0;
  // Past the limit (or before 0) the direct path refuses the step with the layer's own message.
  if (position < 0 || position >= position_limit || position > INT32_MAX - kBucket) return false;
  Shape shape;
  shape.last = last;
  shape.sequences = sequences;
  shape.slot = sequences ? step.sequences[0].slot : 0;
  shape.all_logits = step.all_logits;
  shape.logit_rows = step.logit_rows;
  shape.bucket = position / kBucket;
  // A one-token step at position p reaches p + 1 <= position_limit.
  shape.max_position = std::min(shape.bucket * kBucket + kBucket - 1, position_limit - 1);
  Run& r = m_runs[first];
  if (!r.exec || !(r.shape == shape)) {
    r.exec.reset();
    if (!capture(r, shape, position, enqueue)) return false;
  }
  if (!m_position_written) {
    cuda::set_position(m_device_position, position, m_stream);
    m_position_written = true;
  }
  FERRY_CUDA_CHECK(cudaGraphLaunch(r.exec.get(), m_stream));
  return true;
}

bool DecodeGraphs::capture(Run& r, const Shape& shape, int64_t position, EnqueueRef enqueue) {
  // Thread-local mode: only this thread's calls are checked for what a capture cannot hold (the CPU layers' worker
  // threads make no CUDA calls, and the copy stream is driven from this thread outside any capture).
  const cudaError_t began = cudaStreamBeginCapture(m_stream, cudaStreamCaptureModeThreadLocal);
  if (began != cudaSuccess) {
    cudaGetLastError();
    m_off = true;
    m_warn(std::string("decode steps run kernel by kernel (no CUDA graph): a capture could not begin: ") +
           cudaGetErrorString(began));
    return false;
  }
  m_ops.set_device_position(cuda::DevicePosition{m_device_position, position, shape.max_position});
  std::string failure;
  bool layer_error = false;
  try {
    enqueue();
  } catch (const Error& e) {
    failure = e.what();
    layer_error = e.category() != ErrorCategory::CUDA && e.category() != ErrorCategory::UNSUPPORTED;
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "an exception of unknown type";
  }
  m_ops.set_device_position({});
  cudaGraph_t raw = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(m_stream, &raw);
  const cuda::Graph graph(raw);
  cudaGetLastError();  // a failed capture leaves its error for the next launch check to find: not the direct path's
  if (failure.empty() && ended != cudaSuccess)
    failure = std::string("ending the capture: ") + cudaGetErrorString(ended);
  cudaGraphExec_t exec = nullptr;
  if (failure.empty()) {
    const cudaError_t made = cudaGraphInstantiate(&exec, graph.get(), 0);
    if (made != cudaSuccess) {
      cudaGetLastError();
      failure = std::string("instantiating the graph: ") + cudaGetErrorString(made);
    }
  }
  if (!failure.empty()) {
    if (!layer_error) {
      m_off = true;
      m_warn("decode steps run kernel by kernel from now on (no CUDA graph): capturing one failed: " + failure);
    }
    return false;
  }
  r.exec = cuda::GraphExec(exec);
  r.shape = shape;
  ++m_captures;
  return true;
}

}  // namespace ferry::detail
