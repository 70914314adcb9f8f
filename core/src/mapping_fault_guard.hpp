// A clear error instead of a bare SIGBUS when a mapped model changes underneath ferry. MappedFile reads a model through
// mmap; if the file is truncated (or rewritten in place) while ferry runs, touching a page past the new end raises
// SIGBUS and the process dies with no message (exit 135). Each mapping registers its address range and path in a
// fixed table; a SIGBUS handler that finds the faulting address in the table writes one line naming the file and
// exits with status 1 (bad input). A fault anywhere else goes to the handler that was there before ours, or ends the
// process with the default action as if ferry had no handler.
//
// The handler is installed once, process-wide, by the first registration.
#pragma once

#include <cstddef>

namespace ferry::detail {

// Records [begin, begin + size) as the mapping of `path` (as the user named it). Returns a slot to unregister, or -1
// when the table is full or the path too long: a fault in that mapping then ends the process with a plain SIGBUS.
int register_mapping(const void* begin, size_t size, const char* path) noexcept;

// Forgets a slot from register_mapping (-1 is ignored); call it before the range is unmapped.
void unregister_mapping(int slot) noexcept;

}  // namespace ferry::detail
