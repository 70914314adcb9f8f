#include "ferry/offload/host_pool.hpp"

#include <sys/resource.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "backend.hpp"
#include "ferry/error.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/memory_plan.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kFillChunk = size_t{8} << 20;  // parallel fill granularity: large enough to stream, small to balance

std::string limit_text(rlim_t value) { return value == RLIM_INFINITY ? "unlimited" : format_size(value); }

}  // namespace

void default_warning(const std::string& message) { std::fprintf(stderr, "ferry: warning: %s\n", message.c_str()); }

namespace detail {

HostBlock::HostBlock(HostBlock&& other) noexcept
    : m_data(std::exchange(other.m_data, nullptr)),
      m_size(std::exchange(other.m_size, 0)),
      m_pinned(std::exchange(other.m_pinned, false)) {}

HostBlock& HostBlock::operator=(HostBlock&& other) noexcept {
  if (this != &other) {
    release();
    m_data = std::exchange(other.m_data, nullptr);
    m_size = std::exchange(other.m_size, 0);
    m_pinned = std::exchange(other.m_pinned, false);
  }
  return *this;
}

HostBlock::~HostBlock() { release(); }

void HostBlock::release() noexcept {
  if (m_data == nullptr) return;
  if (m_pinned)
    pinned_free(m_data);
  else
    std::free(m_data);
  m_data = nullptr;
  m_size = 0;
}

HostBlock HostBlock::allocate(size_t bytes, bool pin, bool simulate_pin_failure, std::string* failure) {
  HostBlock block;
  if (bytes == 0) return block;
  if (pin && simulate_pin_failure) {
    *failure = "simulated pinning failure (simulate_pin_failure)";
  } else if (pin && gpu_available()) {
    std::string error;
    if (void* p = pinned_alloc(bytes, &error)) {
      block.m_data = static_cast<std::byte*>(p);
      block.m_size = bytes;
      block.m_pinned = true;
      return block;
    }
    *failure = error;
  }
  const size_t rounded = (bytes + kPage - 1) / kPage * kPage;
  void* p = std::aligned_alloc(kPage, rounded);
  if (p == nullptr)
    fail(ErrorCategory::IO, "could not allocate " + format_size(bytes) + " of host memory (aligned_alloc failed)");
  block.m_data = static_cast<std::byte*>(p);
  block.m_size = bytes;
  return block;
}

std::string memlock_limit_text() {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0)
    return std::string("RLIMIT_MEMLOCK (max locked memory) could not be read: ") + std::strerror(errno);
  return "RLIMIT_MEMLOCK (max locked memory) is " + limit_text(limit.rlim_cur) + " soft / " +
         limit_text(limit.rlim_max) + " hard";
}

}  // namespace detail

PinnedHostPool::PinnedHostPool(std::span<const std::span<const WeightTensor>> layers, const HostPoolOptions& options) {
  std::vector<uint64_t> starts;
  uint64_t total = 0;
  for (const auto& tensors : layers) {
    m_layouts.push_back(layer_layout(tensors));
    starts.push_back(total);
    total = align_up(total + m_layouts.back().bytes, kPage);
  }
  m_block = detail::HostBlock::allocate(total, true, options.simulate_pin_failure, &m_fallback_reason);
  if (!m_fallback_reason.empty()) {
    const WarningSink& warn = options.warn ? options.warn : WarningSink(default_warning);
    warn("could not pin " + format_size(total) + " of host memory for the streamed-weight pool (" + m_fallback_reason +
         "); " + detail::memlock_limit_text() +
         " (raise it with `ulimit -l` or /etc/security/limits.conf); streaming from pageable memory instead, "
         "which the driver must stage: expect host-to-device copies several times slower than pinned "
         "(the scheduler reports the measured rate)");
  }
  // Fill: every tensor's bytes to its offset, padding zeroed, in parallel chunks (the pool can be gigabytes).
  struct Piece {
    std::byte* dst;
    const std::byte* src;
    size_t bytes;
  };
  std::vector<Piece> pieces;
  for (size_t l = 0; l < layers.size(); ++l) {
    std::byte* base = m_block.data() + starts[l];
    m_spans.emplace_back(base, m_layouts[l].bytes);
    uint64_t written = 0;
    for (size_t t = 0; t < layers[l].size(); ++t) {
      const WeightTensor& w = layers[l][t];
      const uint64_t offset = m_layouts[l].offsets[t];
      const uint64_t bytes = tensor_bytes(w.view);
      if (w.view.data == nullptr && bytes > 0)
        fail(ErrorCategory::INVALID_ARGUMENT, "tensor '" + w.name + "' has no host bytes to fill the pool from");
      std::memset(base + written, 0, offset - written);
      for (uint64_t c = 0; c < bytes; c += kFillChunk)
        pieces.push_back({base + offset + c, static_cast<const std::byte*>(w.view.data) + c,
                          static_cast<size_t>(std::min<uint64_t>(kFillChunk, bytes - c))});
      written = offset + bytes;
    }
    std::memset(base + written, 0, m_layouts[l].bytes - written);
  }
  tbb::parallel_for(tbb::blocked_range<size_t>(0, pieces.size()), [&](const tbb::blocked_range<size_t>& r) {
    for (size_t i = r.begin(); i != r.end(); ++i) std::memcpy(pieces[i].dst, pieces[i].src, pieces[i].bytes);
  });
}

std::span<const std::byte> PinnedHostPool::span(size_t layer) const {
  if (layer >= m_spans.size())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "pinned pool: span " + std::to_string(layer) + " requested, the pool has " + std::to_string(m_spans.size()));
  return m_spans[layer];
}

}  // namespace ferry
