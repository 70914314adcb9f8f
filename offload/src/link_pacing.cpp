#include "ferry/offload/link_pacing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "ferry/error.hpp"

namespace ferry {

std::string link_rate_problem(double gbps) {
  char text[64];
  std::snprintf(text, sizeof text, "%g", gbps);
  if (!std::isfinite(gbps) || gbps <= 0)
    return std::string(text) + " is not a positive rate in GB/s (e.g. 25 or 12, as PCIe 4.0 x16 or x8)";
  if (gbps > kMaxLinkGbps)
    return std::string(text) + " GB/s is above " + std::to_string(static_cast<int>(kMaxLinkGbps)) +
           " GB/s, faster than any host link";
  return {};
}

namespace {

void check_rate(double gbps) {
  if (const std::string problem = link_rate_problem(gbps); !problem.empty())
    fail(ErrorCategory::INVALID_ARGUMENT, "link pacing: " + problem);
}

}  // namespace

uint64_t pacing_chunk_bytes(double gbps) {
  check_rate(gbps);
  const double ideal = gbps * 1e9 * kPacingChunkSeconds;
  const auto clamped = static_cast<uint64_t>(
      std::clamp(ideal, static_cast<double>(kPacingMinChunkBytes), static_cast<double>(kPacingMaxChunkBytes)));
  return clamped / 4096 * 4096;
}

std::vector<PacedChunk> link_pacing_schedule(uint64_t bytes, double gbps, uint64_t chunk_bytes) {
  check_rate(gbps);
  if (chunk_bytes == 0) chunk_bytes = pacing_chunk_bytes(gbps);
  std::vector<PacedChunk> chunks;
  chunks.reserve(static_cast<size_t>((bytes + chunk_bytes - 1) / chunk_bytes));
  for (uint64_t offset = 0; offset < bytes; offset += chunk_bytes) {
    const uint64_t n = std::min(chunk_bytes, bytes - offset);
    // From the bytes through the chunk's end, not a sum of per-chunk times: no rounding accumulates.
    chunks.push_back({offset, n, link_seconds(offset + n, gbps)});
  }
  return chunks;
}

}  // namespace ferry
