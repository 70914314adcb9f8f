#include "ferry/offload/arena_allocator.hpp"

#include <algorithm>
#include <cstdio>

#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry {

ArenaAllocator::ArenaAllocator(uintptr_t base, const CategoryBytes& reservations) : m_base(base) {
  if (base % kArenaAlignment != 0)
    fail(ErrorCategory::INTERNAL, "arena base address is not " + std::to_string(kArenaAlignment) + "-byte aligned");
  uint64_t offset = 0;
  for (size_t i = 0; i < kMemoryCategoryCount; ++i) {
    const auto category = static_cast<MemoryCategory>(i);
    if (!in_arena(category) && reservations[i] != 0)
      fail(ErrorCategory::INTERNAL,
           "arena: category '" + std::string(memory_category_name(category)) + "' is not part of the arena");
    m_reserved[i] = align_up(reservations[i]);
    m_offset[i] = offset;
    offset += m_reserved[i];
  }
  m_capacity = offset;
}

uintptr_t ArenaAllocator::allocate(MemoryCategory category, uint64_t bytes, std::string_view label) {
  const size_t i = index(category);
  const uint64_t aligned = align_up(bytes);
  if (aligned < bytes || m_used[i] + aligned > m_reserved[i] || m_used[i] + aligned < m_used[i])
    fail(ErrorCategory::BUDGET, "arena: request for " + format_size(bytes) + " (" + std::to_string(bytes) +
                                    " bytes) of " + std::string(memory_category_name(category)) + " for '" +
                                    std::string(label) + "' does not fit: that category has " +
                                    format_size(m_reserved[i] - m_used[i]) + " left of " + format_size(m_reserved[i]) +
                                    " reserved\n" + breakdown());
  const uintptr_t address = m_base + m_offset[i] + m_used[i];
  m_used[i] += aligned;
  m_requested[i] += bytes;
  m_high_water = std::max(m_high_water, used_total());
  return address;
}

void ArenaAllocator::reset(MemoryCategory category) noexcept {
  m_used[index(category)] = 0;
  m_requested[index(category)] = 0;
}

uint64_t ArenaAllocator::used_total() const noexcept {
  uint64_t s = 0;
  for (uint64_t u : m_used) s += u;
  return s;
}

std::string ArenaAllocator::breakdown() const {
  std::string out = "  category               requested          used      reserved\n";
  char line[160];
  for (size_t i = 0; i < kMemoryCategoryCount; ++i) {
    const auto category = static_cast<MemoryCategory>(i);
    if (!in_arena(category)) continue;
    const std::string_view name = memory_category_name(category);
    std::snprintf(line, sizeof line, "  %-18.*s %13s %13s %13s\n", static_cast<int>(name.size()), name.data(),
                  format_size(m_requested[i]).c_str(), format_size(m_used[i]).c_str(),
                  format_size(m_reserved[i]).c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-18s %13s %13s %13s   (high-water %s)\n", "total", "",
                format_size(used_total()).c_str(), format_size(m_capacity).c_str(), format_size(m_high_water).c_str());
  out += line;
  return out;
}

}  // namespace ferry
