#include "ferry/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "signal_cleanup.hpp"
#include "temporary_names.hpp"
#include "write_target.hpp"

namespace ferry {
namespace {

[[noreturn]] void fail_io(const std::filesystem::path& path, const std::string& what, int err) {
  fail(ErrorCategory::IO, path.string() + ": cannot " + what + ": " + std::strerror(err));
}

bool is_file_name(const std::string& name) { return !name.empty() && name != "." && name != ".."; }

}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target) : m_target(std::move(target)) {
  if (!is_file_name(m_target.filename().string()))
    fail(ErrorCategory::INVALID_ARGUMENT, m_target.string() + ": not a file name to write");
  const detail::WriteTarget resolved = detail::resolve_write_target(m_target);
  m_final = resolved.path;
  if (resolved.mode == detail::WriteMode::WRITE_THROUGH) {
    open_in_place(m_final);
    return;
  }
  const std::string file_name = m_final.filename().string();
  if (!is_file_name(file_name))  // a link to "dir/" or ".."
    fail(ErrorCategory::INVALID_ARGUMENT,
         m_target.string() + ": links to " + m_final.string() + ", which is not a file name to write");
  m_dir = m_final.parent_path().empty() ? std::filesystem::path(".") : m_final.parent_path();
  detail::remove_stale_temporaries(m_dir, file_name);
  // The process id and a process-wide counter make the name unique among writers; O_EXCL makes a clash (a leftover
  // from a crashed process with the same id) a retry rather than a shared file.
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    m_tmp = m_dir / detail::temporary_name(file_name, ::getpid(), counter++);
    // Registered before it exists: an interruption between the two unlinks a missing path, never leaves a file.
    std::error_code ec;
    const std::filesystem::path absolute = std::filesystem::absolute(m_tmp, ec);
    m_cleanup_slot = detail::register_temporary(ec ? m_tmp.c_str() : absolute.c_str());
    // 0666 filtered by the umask (not mkstemp's 0600): the file gets the permissions a plain create would give it.
    m_fd = ::open(m_tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (m_fd >= 0) return;
    const int err = errno;
    detail::unregister_temporary(std::exchange(m_cleanup_slot, -1));
    if (err != EEXIST) {
      m_tmp.clear();
      fail_io(m_target, "create a temporary file beside it (" + m_dir.string() + ")", err);
    }
  }
  m_tmp.clear();
  fail(ErrorCategory::IO, m_target.string() + ": cannot find a free temporary file name in " + m_dir.string());
}

void AtomicFile::open_in_place(const std::filesystem::path& path) {
  do {
    m_fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  } while (m_fd < 0 && errno == EINTR);
  if (m_fd < 0) fail_io(m_target, "open for writing", errno);
  // The type was checked by name; the descriptor is what gets written, so check it again (the name may have changed).
  struct stat st {};
  if (::fstat(m_fd, &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
    ::close(std::exchange(m_fd, -1));
    fail(ErrorCategory::IO, m_target.string() + ": changed while being opened; expected a character device or FIFO");
  }
}

AtomicFile::~AtomicFile() {
  if (m_fd >= 0) ::close(m_fd);
  if (!m_committed && !m_tmp.empty()) ::unlink(m_tmp.c_str());
  detail::unregister_temporary(m_cleanup_slot);
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": write after commit");
  const std::string where = m_tmp.empty() ? "write" : "write (temporary file " + m_tmp.string() + ")";
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(m_fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io(m_target, where, errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": commit twice");
  if (m_tmp.empty()) {  // written in place: nothing to flush to a disk or rename
    if (::close(std::exchange(m_fd, -1)) != 0) fail_io(m_target, "close", errno);
    m_committed = true;
    return;
  }
  if (::fsync(m_fd) != 0) fail_io(m_target, "flush to disk (temporary file " + m_tmp.string() + ")", errno);
  const int fd = std::exchange(m_fd, -1);
  if (::close(fd) != 0) fail_io(m_target, "close (temporary file " + m_tmp.string() + ")", errno);
  if (std::rename(m_tmp.c_str(), m_final.c_str()) != 0)
    fail_io(m_target, "rename " + m_tmp.string() + " over it", errno);
  m_committed = true;
  detail::unregister_temporary(std::exchange(m_cleanup_slot, -1));
  const int dir_fd = ::open(m_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    // The data is complete and in place; a failed directory fsync only weakens crash durability, so it is not an
    // error (some file systems refuse fsync on directories).
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  AtomicFile out(path);
  out.write(bytes);
  out.commit();
}

}  // namespace ferry
