#include "atomic_output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "ferry/error.hpp"

namespace ferry::cli {
namespace {

[[noreturn]] void fail_io(const std::filesystem::path& target, const std::string& what, int err) {
  fail(ErrorCategory::IO, target.string() + ": " + what + ": " + std::strerror(err));
}

}  // namespace

AtomicOutputFile::AtomicOutputFile(std::filesystem::path target) : m_target(std::move(target)) {
  // O_EXCL with a fresh name rather than mkstemp: mkstemp creates mode 0600, while the output should get the usual
  // permissions (0666 minus the umask), as if it had been created directly.
  std::random_device seed;
  std::mt19937_64 rng((uint64_t{seed()} << 32) ^ static_cast<uint64_t>(::getpid()));
  for (int attempt = 0; attempt < 100 && m_fd < 0; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp.%016llx", static_cast<unsigned long long>(rng()));
    m_temp = m_target.string() + suffix;
    m_fd = ::open(m_temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (m_fd < 0 && errno != EEXIST) {
      const int err = errno;
      m_temp.clear();
      fail_io(m_target, "cannot create a temporary file beside it", err);
    }
  }
  if (m_fd < 0) {
    m_temp.clear();
    fail_io(m_target, "cannot create a temporary file beside it", EEXIST);
  }
}

AtomicOutputFile::~AtomicOutputFile() {
  if (!m_committed) discard();
}

void AtomicOutputFile::discard() noexcept {
  if (m_fd >= 0) ::close(m_fd);
  m_fd = -1;
  if (!m_temp.empty()) ::unlink(m_temp.c_str());
  m_temp.clear();
}

void AtomicOutputFile::write(std::span<const std::byte> bytes) {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": write after commit");
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(m_fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_io(m_target, "cannot write (temporary file " + m_temp.string() + ")", errno);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void AtomicOutputFile::commit() {
  if (m_fd < 0) fail(ErrorCategory::INTERNAL, m_target.string() + ": commit twice");
  if (::fsync(m_fd) != 0) fail_io(m_target, "cannot flush to disk", errno);
  const int fd = m_fd;
  m_fd = -1;
  if (::close(fd) != 0) fail_io(m_target, "cannot close", errno);
  if (std::rename(m_temp.c_str(), m_target.c_str()) != 0)
    fail_io(m_target, "cannot rename the temporary file over it", errno);
  m_committed = true;
  m_temp.clear();
}

}  // namespace ferry::cli
