#include "ferry/offload/cuda/device_arena.hpp"

#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry::cuda {

DeviceArena::DeviceArena(const MemoryPlan& plan) {
  CategoryBytes reservations{};
  for (size_t i = 0; i < kMemoryCategoryCount; ++i)
    if (in_arena(static_cast<MemoryCategory>(i))) reservations[i] = plan.bytes[i];
  const uint64_t bytes = plan.arena_bytes();
  size_t free_now = 0, total = 0;
  FERRY_CUDA_CHECK(cudaMemGetInfo(&free_now, &total));
  if (bytes > free_now)
    fail(ErrorCategory::BUDGET, "device arena: the plan needs " + format_size(bytes) + " but the device has only " +
                                    format_size(free_now) + " free (of " + format_size(total) +
                                    "); lower the budget or free the device\n" + plan.breakdown());
  m_buffer = DeviceBuffer::allocate(bytes);
  m_allocator = ArenaAllocator(reinterpret_cast<uintptr_t>(m_buffer.data()), reservations);
}

void* DeviceArena::allocate(MemoryCategory category, uint64_t bytes, std::string_view label) {
  return reinterpret_cast<void*>(m_allocator.allocate(category, bytes, label));
}

}  // namespace ferry::cuda
