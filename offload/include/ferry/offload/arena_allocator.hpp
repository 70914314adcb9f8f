// The bookkeeping half of the device arena, pure C++ so it is testable without a GPU: one reservation split into a
// region per memory category (the sizes the memory plan computed), each region bump-allocated in 256-byte aligned
// pieces. Addresses are plain integers here; DeviceArena turns them into device pointers.
//
// Invariants: every piece is aligned to kArenaAlignment; pieces of different categories never overlap; a request that
// does not fit its category's region throws BUDGET with the per-category breakdown (requested, used, reserved) and
// leaves the allocator unchanged. The high-water mark is the largest total ever in use; with reset() it can be below
// the sum of the allocations made.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ferry/offload/memory_plan.hpp"

namespace ferry {

class ArenaAllocator {
 public:
  ArenaAllocator() = default;
  // `base` must be aligned to kArenaAlignment. Reservations of CONTEXT and MARGIN must be zero (they are not arena).
  ArenaAllocator(uintptr_t base, const CategoryBytes& reservations);

  // The address of `bytes` bytes in `category`'s region; `label` names the piece in error messages.
  uintptr_t allocate(MemoryCategory category, uint64_t bytes, std::string_view label);
  // Frees every piece of one category (its requested/used go back to zero; the high-water mark stays).
  void reset(MemoryCategory category) noexcept;

  uintptr_t base() const noexcept { return m_base; }
  uint64_t capacity() const noexcept { return m_capacity; }
  uint64_t reserved(MemoryCategory c) const noexcept { return m_reserved[index(c)]; }
  uint64_t used(MemoryCategory c) const noexcept { return m_used[index(c)]; }            // aligned
  uint64_t requested(MemoryCategory c) const noexcept { return m_requested[index(c)]; }  // as asked
  uint64_t used_total() const noexcept;
  uint64_t high_water() const noexcept { return m_high_water; }
  // One line per arena category: requested, used, reserved.
  std::string breakdown() const;

 private:
  static size_t index(MemoryCategory c) noexcept { return static_cast<size_t>(c); }

  uintptr_t m_base = 0;
  uint64_t m_capacity = 0;
  CategoryBytes m_reserved{};
  CategoryBytes m_offset{};  // where each category's region starts, from m_base
  CategoryBytes m_used{};
  CategoryBytes m_requested{};
  uint64_t m_high_water = 0;
};

}  // namespace ferry
