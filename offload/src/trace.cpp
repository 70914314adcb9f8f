#include "ferry/offload/trace.hpp"

#include <nlohmann/json.hpp>
#include <span>

#include "ferry/atomic_file.hpp"

namespace ferry {

std::string_view trace_track_name(TraceTrack track) noexcept {
  switch (track) {
    case TraceTrack::COPY:
      return "copy stream";
    case TraceTrack::COMPUTE:
      return "compute stream";
    case TraceTrack::CPU:
      return "CPU pool";
    case TraceTrack::HOST:
      return "host";
  }
  return "?";
}

void TraceRecorder::write_chrome_json(const std::filesystem::path& path) const {
  nlohmann::json events = nlohmann::json::array();
  constexpr int kPid = 1;
  for (TraceTrack track : {TraceTrack::COPY, TraceTrack::COMPUTE, TraceTrack::CPU, TraceTrack::HOST}) {
    const int tid = static_cast<int>(track) + 1;
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", kPid},
                      {"tid", tid},
                      {"args", {{"name", std::string(trace_track_name(track))}}}});
    events.push_back(
        {{"name", "thread_sort_index"}, {"ph", "M"}, {"pid", kPid}, {"tid", tid}, {"args", {{"sort_index", tid}}}});
  }
  for (const TraceSpan& s : m_spans) {
    nlohmann::json args = {{"step", s.step}};
    if (s.layer >= 0) args["layer"] = s.layer;
    if (s.bytes > 0) {
      args["bytes"] = s.bytes;
      if (s.duration_us > 0) args["GB/s"] = static_cast<double>(s.bytes) / (s.duration_us * 1e3);
    }
    events.push_back({{"name", s.name},
                      {"cat", std::string(trace_track_name(s.track))},
                      {"ph", "X"},
                      {"ts", s.start_us},
                      {"dur", s.duration_us},
                      {"pid", kPid},
                      {"tid", static_cast<int>(s.track) + 1},
                      {"args", std::move(args)}});
  }
  const nlohmann::json document = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  const std::string text = document.dump(1);

  write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace ferry
