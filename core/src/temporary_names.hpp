// The names of AtomicFile's temporaries, and the sweep that removes those a dead process left behind. A temporary is
// `.NAME.ferry-tmp.PID.N` beside the target NAME: hidden, tied to the target, and carrying the writer's process id,
// so a later write of the same target can tell a leftover of a crashed or killed writer (that process is gone) from
// the live temporary of a writer still running (kept). A kill -9 or a power cut cannot be cleaned up when it happens;
// gigabyte-sized leftovers of `make-model` would otherwise stay forever.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::detail {

std::string temporary_name(std::string_view target_name, pid_t pid, uint64_t n);

// The writer's process id when `entry` is exactly a temporary name of `target_name`, nothing otherwise.
std::optional<pid_t> temporary_owner(std::string_view entry, std::string_view target_name);

// Removes the regular files in `dir` named as temporaries of `target_name` whose process no longer exists. Best
// effort: a folder that cannot be read or a file that cannot be removed is left as it is.
void remove_stale_temporaries(const std::filesystem::path& dir, std::string_view target_name) noexcept;

}  // namespace ferry::detail
