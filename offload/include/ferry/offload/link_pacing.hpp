// Link-speed simulation: host-to-device copies of streamed weights held to a chosen rate (e.g. 25 and 12 GB/s, as
// PCIe 4.0 x16 and x8), so results for consumer cards can be shown on a card with a faster link. This file is the
// arithmetic, CUDA-free so the CPU-only build tests it; cuda/paced_copy.hpp issues the copies.
//
// A transfer of B bytes at R GB/s is cut into chunks of about kPacingChunkSeconds of the simulated link. Chunk i is
// copied at the real link's speed, then the copy stream waits until its deadline: the time the simulated link would
// have taken for every byte up to the chunk's end, counted from the transfer's start. So no chunk starts before the
// simulated link would have delivered everything ahead of it (a chunk itself lands at the real link's speed, up to one
// chunk early), the transfer's completion — all the compute waits for — comes no sooner than B / R (plus one
// wake-up), and a late wake-up is caught up by the next chunk's deadline instead of adding up. The compute stream is never paced: copies and compute overlap as they would on the
// slower link.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry {

// Half a millisecond of the simulated link per chunk: much longer than a host wake-up (~0.05-0.1 ms) and the gap
// between a host function and the next copy, so those never accumulate; short enough that a layer's copy is spread over
// its duration rather than arriving in one burst at the real link's speed.
inline constexpr double kPacingChunkSeconds = 0.5e-3;
inline constexpr uint64_t kPacingMinChunkBytes = uint64_t{256} << 10;
inline constexpr uint64_t kPacingMaxChunkBytes = uint64_t{64} << 20;
// Rates are in GB/s = 1e9 bytes/s, as link speeds are quoted. Above this no real link is simulated.
inline constexpr double kMaxLinkGbps = 10000.0;

struct PacedChunk {
  uint64_t offset = 0;    // into the transfer
  uint64_t bytes = 0;     // > 0
  double deadline_s = 0;  // seconds after the transfer's start before which the next chunk may not begin
};

// Empty when `gbps` is a rate that can be simulated (finite, > 0, <= kMaxLinkGbps), else why not ("0 is not a
// positive rate ..."), for callers to name their flag or option.
std::string link_rate_problem(double gbps);

// Chunk size for a rate: kPacingChunkSeconds of it, clamped to [kPacingMinChunkBytes, kPacingMaxChunkBytes] and
// rounded down to 4 KiB. INVALID_ARGUMENT for a rate link_rate_problem rejects.
uint64_t pacing_chunk_bytes(double gbps);

// The chunks of a transfer of `bytes` at `gbps`, in order, each at most `chunk_bytes` (0: pacing_chunk_bytes(gbps));
// empty for 0 bytes. INVALID_ARGUMENT for a bad rate.
std::vector<PacedChunk> link_pacing_schedule(uint64_t bytes, double gbps, uint64_t chunk_bytes = 0);

// Seconds `bytes` take at `gbps`.
inline double link_seconds(uint64_t bytes, double gbps) { return static_cast<double>(bytes) / (gbps * 1e9); }

}  // namespace ferry
