// Spans of a scheduler run (copies, GPU compute, CPU layers, host waits) on one timeline, written as Chrome trace
// JSON (chrome://tracing, Perfetto). GPU spans come from CUDA events converted to microseconds from the scheduler's
// epoch through an anchor event; CPU spans from steady_clock against the same epoch. Only recorded when a trace was
// asked for, so steps without one allocate nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ferry {

enum class TraceTrack : uint8_t {
  COPY,     // the copy stream: host-to-device copies of streamed layers
  COMPUTE,  // the compute stream: GPU layers, activation copies
  CPU,      // the oneTBB pool: CPU layers
  HOST,     // the scheduling thread: waits for the GPU
};

struct TraceSpan {
  std::string name;
  TraceTrack track = TraceTrack::COMPUTE;
  double start_us = 0;
  double duration_us = 0;
  int64_t step = 0;
  int64_t layer = -1;  // -1: not a layer's span
  uint64_t bytes = 0;  // copies: bytes moved
};

class TraceRecorder {
 public:
  void add(TraceSpan span) { m_spans.push_back(std::move(span)); }
  const std::vector<TraceSpan>& spans() const noexcept { return m_spans; }
  void clear() noexcept { m_spans.clear(); }
  // {"traceEvents": [...], "displayTimeUnit": "ms"}: one complete ("X") event per span, thread-name metadata per
  // track. Written to a temporary file beside `path`, then renamed over it, so a reader never sees half a trace.
  // Throws IO naming the path.
  void write_chrome_json(const std::filesystem::path& path) const;

 private:
  std::vector<TraceSpan> m_spans;
};

std::string_view trace_track_name(TraceTrack track) noexcept;

}  // namespace ferry
