#include "temporary_names.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace ferry::detail {
namespace {

constexpr std::string_view kMarker = ".ferry-tmp.";

// Parses a whole run of decimal digits (no sign, not empty) into `value`; false for anything else.
template <typename T>
bool parse_digits(std::string_view text, T& value) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

std::string temporary_name(std::string_view target_name, pid_t pid, uint64_t n) {
  std::string name = ".";
  name += target_name;
  name += kMarker;
  name += std::to_string(pid);
  name += '.';
  name += std::to_string(n);
  return name;
}

std::optional<pid_t> temporary_owner(std::string_view entry, std::string_view target_name) {
  if (entry.size() < 1 + target_name.size() + kMarker.size() || entry[0] != '.') return std::nullopt;
  entry.remove_prefix(1);
  if (entry.substr(0, target_name.size()) != target_name) return std::nullopt;
  entry.remove_prefix(target_name.size());
  if (entry.substr(0, kMarker.size()) != kMarker) return std::nullopt;
  entry.remove_prefix(kMarker.size());
  const size_t dot = entry.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  pid_t pid = 0;
  uint64_t n = 0;
  if (!parse_digits(entry.substr(0, dot), pid) || !parse_digits(entry.substr(dot + 1), n) || pid <= 0)
    return std::nullopt;
  return pid;
}

void remove_stale_temporaries(const std::filesystem::path& dir, std::string_view target_name) noexcept {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  const pid_t self = ::getpid();
  while (const dirent* e = ::readdir(d)) {
    const std::optional<pid_t> owner = temporary_owner(e->d_name, target_name);
    // Our own process id: a live AtomicFile of this process. Any other live process (kill succeeds, or EPERM: it
    // exists but belongs to someone else) may still be writing. Only ESRCH says the writer is gone.
    if (!owner || *owner == self || ::kill(*owner, 0) == 0 || errno != ESRCH) continue;
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      ::unlinkat(::dirfd(d), e->d_name, 0);
  }
  ::closedir(d);
}

}  // namespace ferry::detail
