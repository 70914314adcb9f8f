// AtomicOutputFile: an output written in pieces that appears all at once. Data goes to a temporary file beside the
// target (same directory, so the final rename stays on one file system); commit() flushes it to disk and renames it
// over the target. If commit() is never reached (an error, an exception), the destructor removes the temporary, so a
// failed `ferry dump` never leaves a half-written output or clobbers an older one. ferry::write_file_atomically
// does the same for a buffer already in memory; this class exists for outputs too large to hold at once.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace ferry::cli {

class AtomicOutputFile {
 public:
  // Creates the temporary file. Throws IO naming the target when the directory cannot be written.
  explicit AtomicOutputFile(std::filesystem::path target);
  AtomicOutputFile(const AtomicOutputFile&) = delete;
  AtomicOutputFile& operator=(const AtomicOutputFile&) = delete;
  ~AtomicOutputFile();

  // Appends bytes. Throws IO naming the target (e.g. the disk is full).
  void write(std::span<const std::byte> bytes);
  // fsync, close, rename over the target. Throws IO; afterwards the object holds nothing.
  void commit();

 private:
  void discard() noexcept;

  std::filesystem::path m_target;
  std::filesystem::path m_temp;
  int m_fd = -1;
  bool m_committed = false;
};

}  // namespace ferry::cli
