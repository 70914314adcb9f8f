// A host-to-device transfer held to a simulated link rate (the arithmetic and its reasons: link_pacing.hpp). CUDA
// builds only.
//
// On the stream, one transfer is: a host function that notes the start time, then per chunk a cudaMemcpyAsync and a
// host function that sleeps until the chunk's deadline. Host functions block only the stream they are on (the copy
// stream), so the compute stream runs on while the copy stream is held back:
//
//   copy stream  |start|c0|sleep...|c1|sleep...|c2|sleep.|      (each |cN|sleep| lasts kPacingChunkSeconds)
//   compute         |==layer k-1==========|==layer k-1 cont.=====|==layer k (waits for the transfer's end)
//
// The CUDA driver may run the host functions of all streams on one thread, so two paced transfers in flight on
// different streams would hold each other up. ferry never has two: a scheduler has one copy stream, and `ferry bench`
// waits for one arm's copies (LayerScheduler::wait_idle) before it times another.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "ferry/offload/link_pacing.hpp"

namespace ferry::cuda {

class PacedCopy {
 public:
  // A transfer of `bytes` at `gbps` (INVALID_ARGUMENT for a bad rate).
  PacedCopy(uint64_t bytes, double gbps);
  // Not movable: the host functions enqueued hold pointers into it.
  PacedCopy(const PacedCopy&) = delete;
  PacedCopy& operator=(const PacedCopy&) = delete;

  // Enqueues the transfer from `src` (pinned host memory, for the copies to be asynchronous) to `dst` on `stream`.
  // The previous enqueue of this object must have completed (its chunks share the start time); this object and both
  // buffers must outlive the transfer.
  void enqueue(void* dst, const void* src, cudaStream_t stream);

  uint64_t bytes() const noexcept { return m_bytes; }
  double gbps() const noexcept { return m_gbps; }
  const std::vector<PacedChunk>& chunks() const noexcept { return m_chunks; }

 private:
  struct Wait {
    const PacedCopy* owner;
    double deadline_s;
  };
  static void CUDART_CB note_start(void* self);
  static void CUDART_CB wait_for_deadline(void* wait);

  uint64_t m_bytes;
  double m_gbps;
  std::vector<PacedChunk> m_chunks;
  std::vector<Wait> m_waits;           // one per chunk, handed to cudaLaunchHostFunc
  std::atomic<int64_t> m_start_ns{0};  // steady_clock, written by note_start on the CUDA host-function thread
};

}  // namespace ferry::cuda
