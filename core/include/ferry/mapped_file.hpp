// MappedFile: a whole file mapped read-only into memory (RAII, move-only). GGUF tensors are read straight from the
// mapping, so a model is never copied into private memory just to be parsed; the kernel pages it in on demand. The
// file must stay unchanged while mapped: if it is truncated, touching a page past its new end ends the process with a
// message naming the file and exit status 1 (core/src/mapping_fault_guard.hpp), not a bare SIGBUS.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace ferry {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file gives an empty span (mmap refuses length 0, so nothing is mapped).
  // Throws IO naming the path and the system's reason when the file cannot be opened, sized or mapped, or is not a
  // regular file (a FIFO is refused at once, never waited on).
  explicit MappedFile(const std::filesystem::path& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const noexcept { return {m_data, m_size}; }
  size_t size() const noexcept { return m_size; }
  const std::filesystem::path& path() const noexcept { return m_path; }

 private:
  void release() noexcept;

  std::filesystem::path m_path;
  const std::byte* m_data = nullptr;
  size_t m_size = 0;
  int m_fault_slot = -1;  // the mapping's entry in the SIGBUS guard's table, -1 when none
};

}  // namespace ferry
