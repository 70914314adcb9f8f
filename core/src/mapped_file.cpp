#include "ferry/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "ferry/error.hpp"
#include "mapping_fault_guard.hpp"

namespace ferry {
namespace {

[[noreturn]] void fail_io(const std::filesystem::path& path, const char* what, int err) {
  fail(ErrorCategory::IO, path.string() + ": cannot " + what + ": " + std::strerror(err));
}

// Closes the descriptor on every path out of the constructor; the mapping stays valid after close.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "an unknown kind of file";
}

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : m_path(path) {
  // O_NONBLOCK: a blocking open of a FIFO waits for a writer that may never come (ferry would hang before it could
  // refuse the file); it changes nothing for a regular file, the only kind that is mapped.
  FdGuard guard{::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC)};
  if (guard.fd < 0) fail_io(path, "open", errno);
  struct stat st {};
  if (::fstat(guard.fd, &st) != 0) fail_io(path, "stat", errno);
  if (!S_ISREG(st.st_mode))
    fail(ErrorCategory::IO, path.string() + ": not a regular file (it is " + file_kind(st.st_mode) +
                                "); ferry reads models from regular files only");
  if (st.st_size == 0) return;
  if (static_cast<unsigned long long>(st.st_size) > SIZE_MAX)
    fail(ErrorCategory::IO, path.string() + ": cannot map: file of " + std::to_string(st.st_size) +
                                " bytes is larger than the address space");
  const auto size = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, guard.fd, 0);
  if (p == MAP_FAILED) fail_io(path, "mmap", errno);
  m_data = static_cast<const std::byte*>(p);
  m_size = size;
  m_fault_slot = detail::register_mapping(m_data, m_size, m_path.c_str());
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : m_path(std::move(other.m_path)),
      m_data(std::exchange(other.m_data, nullptr)),
      m_size(std::exchange(other.m_size, 0)),
      m_fault_slot(std::exchange(other.m_fault_slot, -1)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    m_path = std::move(other.m_path);
    m_data = std::exchange(other.m_data, nullptr);
    m_size = std::exchange(other.m_size, 0);
    m_fault_slot = std::exchange(other.m_fault_slot, -1);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() noexcept {
  // munmap can only fail for arguments we never produce; a destructor has nobody to report it to anyway.
  detail::unregister_mapping(std::exchange(m_fault_slot, -1));
  if (m_data) ::munmap(const_cast<std::byte*>(m_data), m_size);
  m_data = nullptr;
  m_size = 0;
}

}  // namespace ferry
