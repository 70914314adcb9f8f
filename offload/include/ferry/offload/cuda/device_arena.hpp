// DeviceArena: the one device reservation of a scheduler (the only cudaMalloc in ferry), sized by the memory plan and
// sub-allocated per category by ArenaAllocator (256-byte aligned pieces, a high-water mark, BUDGET with the
// per-category breakdown when a request does not fit). Reserved once at construction: no cudaMalloc during steps.
// CUDA builds only.
#pragma once

#include <cstdint>
#include <string_view>

#include "ferry/offload/arena_allocator.hpp"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/memory_plan.hpp"

namespace ferry::cuda {

class DeviceArena {
 public:
  DeviceArena() = default;
  // Reserves plan.arena_bytes() with the plan's per-category regions. BUDGET (naming both sizes) when the device has
  // less free memory than that, CUDA if cudaMalloc fails anyway.
  explicit DeviceArena(const MemoryPlan& plan);

  void* allocate(MemoryCategory category, uint64_t bytes, std::string_view label);
  template <class T>
  T* allocate_array(MemoryCategory category, uint64_t count, std::string_view label) {
    return static_cast<T*>(allocate(category, count * sizeof(T), label));
  }

  const ArenaAllocator& allocator() const noexcept { return m_allocator; }
  uint64_t size() const noexcept { return m_buffer.size(); }
  uint64_t high_water() const noexcept { return m_allocator.high_water(); }

 private:
  DeviceBuffer m_buffer;
  ArenaAllocator m_allocator;
};

}  // namespace ferry::cuda
