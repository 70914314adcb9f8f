#include "ferry/offload/cuda/paced_copy.hpp"

#include <chrono>
#include <cstddef>
#include <thread>

#include "ferry/kernels/cuda/check.cuh"

namespace ferry::cuda {

using Clock = std::chrono::steady_clock;

PacedCopy::PacedCopy(uint64_t bytes, double gbps)
    : m_bytes(bytes), m_gbps(gbps), m_chunks(link_pacing_schedule(bytes, gbps)) {
  m_waits.reserve(m_chunks.size());
  for (const PacedChunk& c : m_chunks) m_waits.push_back({this, c.deadline_s});
}

void PacedCopy::note_start(void* self) {
  auto* copy = static_cast<PacedCopy*>(self);
  copy->m_start_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(),
                         std::memory_order_release);
}

void PacedCopy::wait_for_deadline(void* wait) {
  const auto* w = static_cast<const Wait*>(wait);
  const Clock::time_point start(std::chrono::nanoseconds(w->owner->m_start_ns.load(std::memory_order_acquire)));
  std::this_thread::sleep_until(
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(w->deadline_s)));
}

void PacedCopy::enqueue(void* dst, const void* src, cudaStream_t stream) {
  FERRY_CUDA_CHECK(cudaLaunchHostFunc(stream, note_start, this));
  for (size_t i = 0; i < m_chunks.size(); ++i) {
    const PacedChunk& c = m_chunks[i];
    FERRY_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::byte*>(dst) + c.offset,
                                     static_cast<const std::byte*>(src) + c.offset, c.bytes, cudaMemcpyHostToDevice,
                                     stream));
    FERRY_CUDA_CHECK(cudaLaunchHostFunc(stream, wait_for_deadline, &m_waits[i]));
  }
}

}  // namespace ferry::cuda
