// AtomicFile: an output written in pieces that appears under its final name only when complete. Data goes to a
// temporary file beside the target (same directory, so the final rename cannot cross file systems); commit() fsyncs
// it, renames it over the target and fsyncs the directory so the rename itself survives a crash. If commit() is never
// reached (an error, an exception), the destructor removes the temporary, so a failed write never leaves a
// half-written output or clobbers an older one. write_file_atomically (gguf_writer.hpp) does this for a buffer already
// in memory; the class is for outputs too large to hold at once.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace ferry {

class AtomicFile {
 public:
  // Creates the temporary file with O_EXCL. Throws INVALID_ARGUMENT when `target` has no file name, IO (naming the
  // target) when the directory cannot be written.
  explicit AtomicFile(std::filesystem::path target);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  // Appends bytes. Throws IO naming the target (e.g. the disk is full); INTERNAL after commit().
  void write(std::span<const std::byte> bytes);
  // fsync, close, rename over the target, fsync the directory. Throws IO; INTERNAL when called twice.
  void commit();

  const std::filesystem::path& target() const noexcept { return m_target; }

 private:
  std::filesystem::path m_target, m_dir, m_tmp;
  int m_fd = -1;
  bool m_committed = false;
};

}  // namespace ferry
