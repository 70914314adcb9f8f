// PinnedHostPool: the host side of streaming. Streamed layers' weights are copied once, at load time, from wherever
// the model keeps them (the mapped file) into page-locked memory that ferry owns (cudaHostAlloc), one contiguous span
// per layer with the tensors back to back (layer_layout), so a layer moves to its staging slot in one large copy at
// the full DMA rate. Pageable memory would be staged by the driver at a fraction of that rate (measuring.md: 6.6 vs
// 55 GB/s on the reference machine), and registering the read-only mmap pages is not done on purpose.
//
// If pinning fails (usually the locked-memory limit), the pool falls back to pageable memory and warns, naming
// RLIMIT_MEMLOCK and its values; the scheduler then reports the measured, slower copy rate. `simulate_pin_failure`
// forces that path so it is tested. Without the CUDA backend (or with no device) there is nothing to pin for: the pool
// is ordinary page-aligned memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ferry/offload/layer.hpp"

namespace ferry {

using WarningSink = std::function<void(const std::string&)>;
// Writes "ferry: warning: MESSAGE" to stderr.
void default_warning(const std::string& message);

struct HostPoolOptions {
  bool simulate_pin_failure = false;  // test hook: behave as if cudaHostAlloc had failed
  WarningSink warn;                   // null: default_warning
};

namespace detail {

// A block of host memory: page-locked (cudaHostAlloc) or page-aligned pageable. RAII, move-only.
class HostBlock {
 public:
  HostBlock() = default;
  HostBlock(HostBlock&& other) noexcept;
  HostBlock& operator=(HostBlock&& other) noexcept;
  HostBlock(const HostBlock&) = delete;
  HostBlock& operator=(const HostBlock&) = delete;
  ~HostBlock();

  // Page-locked when `pin` and a CUDA device is present, else pageable. When pinning was wanted and failed (or
  // `simulate_pin_failure`), the block is pageable and `failure` says why; otherwise `failure` is left empty.
  static HostBlock allocate(size_t bytes, bool pin, bool simulate_pin_failure, std::string* failure);

  std::byte* data() const noexcept { return m_data; }
  size_t size() const noexcept { return m_size; }
  bool pinned() const noexcept { return m_pinned; }

 private:
  void release() noexcept;

  std::byte* m_data = nullptr;
  size_t m_size = 0;
  bool m_pinned = false;
};

// "RLIMIT_MEMLOCK (max locked memory) is 8.00 MiB soft / 8.00 MiB hard" (or "unlimited").
std::string memlock_limit_text();

}  // namespace detail

class PinnedHostPool {
 public:
  PinnedHostPool() = default;
  // One span per entry of `layers` (the tensors of one layer), filled from the tensors' host bytes now (in parallel).
  PinnedHostPool(std::span<const std::span<const WeightTensor>> layers, const HostPoolOptions& options);

  size_t size() const noexcept { return m_spans.size(); }
  std::span<const std::byte> span(size_t layer) const;
  const LayerLayout& layout(size_t layer) const { return m_layouts.at(layer); }
  bool pinned() const noexcept { return m_block.pinned(); }
  uint64_t bytes() const noexcept { return m_block.size(); }
  // Why the pool is pageable although pinning was wanted; empty otherwise.
  const std::string& fallback_reason() const noexcept { return m_fallback_reason; }

 private:
  detail::HostBlock m_block;
  std::vector<LayerLayout> m_layouts;
  std::vector<std::span<const std::byte>> m_spans;
  std::string m_fallback_reason;
};

}  // namespace ferry
