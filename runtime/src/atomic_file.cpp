#include "ferry/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "ferry/error.hpp"

namespace ferry {
namespace {

[[noreturn]] void fail_io(const std::filesystem::path& path, const std::string& what, int err) {
  fail(ErrorCategory::IO, path.string() + ": cannot " + what + ": " + std::strerror(err));
}

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target) : m_target(std::move(target)) {
  const std::string file_name = m_target.filename().string();
  if (file_name.empty() || file_name == "." || file_name == "..")
    fail(ErrorCategory::INVALID_ARGUMENT, m_target.string() + ": not a file name to write");
  m_dir = m_target.parent_path().empty() ? std::filesystem::path(".") : m_target.parent_path();
  // The process id and a process-wide counter make the name unique among writers; O_EXCL makes a clash (a leftover
  // from a crashed process with the same id) a retry rather than a shared file.
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    m_tmp = m_dir / ("." + file_name + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++));
    // 0666 filtered by the umask (not mkstemp's 0600): the file gets the permissions a plain create would give it.
    m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (m_fd >= 0) return;
    if (errno != EEXIST) {
      const int err = errno;
      m_tmp.clear();
      fail_io(m_target, "create a temporary file beside it (" + m_dir.string() + ")", err);
    }
  }
  m_tmp.clear();
  fail(ErrorCategory::IO, m_target.string() + ": cannot find a free temporary file name in " + m_dir.string());
}

AtomicFile::~AtomicFile() {
  if (m_fd >= 0) ::close(m_fd);
  if (!m_committed && !m_tmp.empty()) ::unlink(m_tmp.c_str());
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": write after commit");
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(m_fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io(m_target, "write (temporary file " + m_tmp.string() + ")", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": commit twice");
  if (::fsync(m_fd) != 0) fail_io(m_target, "flush to disk (temporary file " + m_tmp.string() + ")", errno);
  const int fd = std::exchange(m_fd, -1);
  if (::close(fd) != 0) fail_io(m_target, "close (temporary file " + m_tmp.string() + ")", errno);
  if (std::rename(m_tmp.c_str(), m_target.c_str()) != 0)
    fail_io(m_target, "rename " + m_tmp.string() + " over it", errno);
  m_committed = true;
  const int dir_fd = ::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    // The data is complete and in place; a failed directory fsync only weakens crash durability, so it is not an
    // error (some file systems refuse fsync on directories).
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace ferry
