// The link-speed simulation's arithmetic (link_pacing.hpp): the chunk schedule of a paced transfer covers it exactly,
// never lets a prefix arrive faster than the rate, ends at bytes / rate, and (replayed against a model of a faster
// real link with late host wake-ups) finishes within a few percent of the simulated link's time. The CUDA side is
// tested on the GPU (test_link_pacing_gpu.cpp).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/offload/link_pacing.hpp"
#include "support/errors.hpp"
#include "support/seed.hpp"
#include "support/text.hpp"

using namespace ferry;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// When a paced transfer finishes on a real link of `real_gbps` whose host functions wake `wake_s` late: chunk i starts
// when the previous chunk's wait returned (its deadline, or when its copy ended if that is later, plus the wake-up),
// as the copy stream runs it (cuda/paced_copy.cpp).
double replay(const std::vector<PacedChunk>& chunks, double real_gbps, double wake_s) {
  double now = wake_s;  // the start host function
  double start = now;
  for (const PacedChunk& c : chunks) {
    now += link_seconds(c.bytes, real_gbps);             // the copy at the real link's speed
    now = std::max(now, start + c.deadline_s) + wake_s;  // the wait for the chunk's deadline
  }
  return now;
}

void check_schedule(const std::vector<PacedChunk>& chunks, uint64_t bytes, double gbps, uint64_t chunk_bytes) {
  CAPTURE(bytes);
  CAPTURE(gbps);
  REQUIRE(chunks.size() == (bytes + chunk_bytes - 1) / chunk_bytes);
  uint64_t offset = 0;
  double previous = 0;
  for (const PacedChunk& c : chunks) {
    CHECK(c.offset == offset);  // contiguous, in order
    CHECK(c.bytes > 0);
    CHECK(c.bytes <= chunk_bytes);
    CHECK(c.deadline_s > previous);  // strictly later, chunk by chunk
    // No prefix faster than the rate: the bytes through this chunk's end need at least the deadline.
    CHECK(static_cast<double>(c.offset + c.bytes) / c.deadline_s <= gbps * 1e9 * (1 + 1e-12));
    CHECK(c.deadline_s == doctest::Approx(link_seconds(c.offset + c.bytes, gbps)).epsilon(1e-12));
    offset += c.bytes;
    previous = c.deadline_s;
  }
  CHECK(offset == bytes);
  if (!chunks.empty()) CHECK(chunks.back().deadline_s == doctest::Approx(link_seconds(bytes, gbps)).epsilon(1e-12));
}

}  // namespace

TEST_CASE("link pacing: 256 MiB at 25 and 12 GB/s, chunks of half a millisecond of the link") {
  for (const double gbps : {25.0, 12.0}) {
    const uint64_t bytes = 256 * kMiB;
    const uint64_t chunk = pacing_chunk_bytes(gbps);
    CAPTURE(gbps);
    CHECK(chunk % 4096 == 0);
    CHECK(link_seconds(chunk, gbps) == doctest::Approx(kPacingChunkSeconds).epsilon(0.01));
    const std::vector<PacedChunk> chunks = link_pacing_schedule(bytes, gbps);
    check_schedule(chunks, bytes, gbps, chunk);
    // 268435456 bytes / 25e9 B/s = 10.737 ms; / 12e9 = 22.37 ms.
    CHECK(chunks.back().deadline_s == doctest::Approx(268435456.0 / (gbps * 1e9)));
  }
}

TEST_CASE("link pacing: random sizes, rates and chunk sizes give exact, rate-bounded schedules") {
  const uint64_t seed = test::test_seed(4101);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 100; ++trial) {
    const uint64_t bytes = 1 + rng() % (64 * kMiB);
    const double gbps = 0.5 + static_cast<double>(rng() % 100000) / 1000.0;  // 0.5-100.5 GB/s
    const uint64_t chunk = trial % 2 == 0 ? pacing_chunk_bytes(gbps) : 65536 + rng() % (8 * kMiB);
    check_schedule(link_pacing_schedule(bytes, gbps, trial % 2 == 0 ? 0 : chunk), bytes, gbps, chunk);
  }
  CHECK(link_pacing_schedule(0, 25.0).empty());
  // Chunk sizes stay within their bounds at extreme rates.
  CHECK(pacing_chunk_bytes(0.001) == kPacingMinChunkBytes);
  CHECK(pacing_chunk_bytes(kMaxLinkGbps) == kPacingMaxChunkBytes);
}

TEST_CASE("link pacing: replayed on a faster real link with late wake-ups, a transfer takes the simulated time") {
  // A real link of 55 GB/s (pinned H2D on the reference machine) or 40 GB/s, host functions 0.1 ms late: the
  // transfer's time stays within 3% of bytes / rate, since a late wake-up is absorbed by the next deadline.
  for (const double real : {55.0, 40.0})
    for (const double gbps : {25.0, 12.0}) {
      CAPTURE(real);
      CAPTURE(gbps);
      const uint64_t bytes = 256 * kMiB;
      const double want = link_seconds(bytes, gbps);
      const double got = replay(link_pacing_schedule(bytes, gbps), real, 1e-4);
      CHECK(got >= want);
      CHECK(got <= want * 1.03);
    }
  // A rate above the real link's cannot be reached: the transfer runs at the real link's speed (plus wake-ups).
  const double got = replay(link_pacing_schedule(256 * kMiB, 80.0), 55.0, 1e-4);
  CHECK(got >= link_seconds(256 * kMiB, 55.0));
}

TEST_CASE("link pacing: rates that cannot be simulated are refused, saying why") {
  for (const double bad : {0.0, -12.0, std::nan(""), std::numeric_limits<double>::infinity(), kMaxLinkGbps * 2}) {
    CAPTURE(bad);
    CHECK_FALSE(link_rate_problem(bad).empty());
    const std::string message =
        test::error_of([&] { link_pacing_schedule(1 << 20, bad); }, ErrorCategory::INVALID_ARGUMENT);
    CHECK(test::contains(message, "link pacing"));
  }
  CHECK(test::contains(link_rate_problem(0.0), "not a positive rate"));
  CHECK(test::contains(link_rate_problem(1e9), "faster than any host link"));
  CHECK(link_rate_problem(12.0).empty());
}
