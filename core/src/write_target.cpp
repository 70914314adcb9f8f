#include "write_target.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/error.hpp"

namespace ferry::detail {
namespace {

// The Linux limit on links followed in one path resolution: a longer chain is almost surely a loop.
constexpr int kMaxLinkHops = 40;

std::filesystem::path read_link(const std::filesystem::path& link, const std::string& named) {
  std::vector<char> buffer(256);
  for (;;) {
    const ssize_t n = ::readlink(link.c_str(), buffer.data(), buffer.size());
    if (n < 0)
      fail(ErrorCategory::IO, named + ": cannot read the symbolic link " + link.string() + ": " + std::strerror(errno));
    if (static_cast<size_t>(n) < buffer.size()) return std::string(buffer.data(), static_cast<size_t>(n));
    buffer.resize(buffer.size() * 2);
  }
}

const char* refused_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISBLK(mode)) return "a block device";
  return nullptr;
}

}  // namespace

WriteTarget resolve_write_target(const std::filesystem::path& target) {
  std::filesystem::path path = target;
  for (int hops = 0;; ++hops) {
    // Named as the user gave it, plus where its links lead when that is somewhere else.
    const std::string named = path == target ? target.string() : target.string() + " (a link to " + path.string() + ")";
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return {path, WriteMode::REPLACE};  // created by the rename; a missing folder fails there
      fail(ErrorCategory::IO, named + ": cannot inspect the output: " + std::strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
      if (hops == kMaxLinkHops)
        fail(ErrorCategory::IO, target.string() + ": cannot write: more than " + std::to_string(kMaxLinkHops) +
                                    " symbolic links in a row (a loop?)");
      const std::filesystem::path next = read_link(path, named);
      path = next.is_absolute() ? next : path.parent_path() / next;
      continue;
    }
    if (S_ISREG(st.st_mode)) return {path, WriteMode::REPLACE};
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) return {path, WriteMode::WRITE_THROUGH};
    const char* kind = refused_kind(st.st_mode);
    fail(ErrorCategory::IO, named + ": is " + std::string(kind ? kind : "not a regular file") +
                                "; expected a regular file (or a character device or FIFO) to write the output to");
  }
}

}  // namespace ferry::detail
