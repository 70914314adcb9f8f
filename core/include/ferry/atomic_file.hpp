// AtomicFile: an output written in pieces that appears under its final name only when complete. Data goes to a
// temporary file beside the target (same directory, so the final rename cannot cross file systems); commit() fsyncs
// it, renames it over the target and fsyncs the directory so the rename itself survives a crash. If commit() is never
// reached (an error, an exception), the destructor removes the temporary, so a failed write never leaves a
// half-written output or clobbers an older one; an interrupting SIGINT, SIGTERM or SIGHUP removes it too, and a later
// write of the same target removes the leftovers of writers that died (signal_cleanup.hpp, temporary_names.hpp).
// write_file_atomically (below) does this for a buffer already in memory; the class is for outputs too large
// to hold at once.
//
// Only a regular file (or a name not yet taken) is replaced. A symbolic link is followed and the file it names is
// replaced in its own directory, the link kept. A character device or a FIFO (`-o /dev/null`, a named pipe) is
// written in place: opened, written, closed, with no temporary and no rename. A directory, a socket or a block device
// is refused before anything is written (write_target.hpp).
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>

namespace ferry {

class AtomicFile {
 public:
  // Creates the temporary file with O_EXCL, or opens a character device or FIFO for writing (a FIFO blocks until it
  // has a reader, as a shell redirection does). Throws INVALID_ARGUMENT when `target` has no file name, IO (naming the
  // target) when the target is of a refused type or its directory cannot be written.
  explicit AtomicFile(std::filesystem::path target);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  // Appends bytes. Throws IO naming the target (e.g. the disk is full); INTERNAL after commit().
  void write(std::span<const std::byte> bytes);
  // fsync, close, rename over the target, fsync the directory (written in place: close). Throws IO; INTERNAL when
  // called twice.
  void commit();

  const std::filesystem::path& target() const noexcept { return m_target; }

 private:
  void open_in_place(const std::filesystem::path& path);

  std::filesystem::path m_target;      // as the caller named it, for messages
  std::filesystem::path m_final;       // m_target with its symbolic links followed: what the rename replaces
  std::filesystem::path m_dir, m_tmp;  // empty when written in place
  int m_fd = -1;
  int m_cleanup_slot = -1;  // the temporary's entry in the signal-cleanup table, -1 when none
  bool m_committed = false;
};

// Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename). Throws IO.
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace ferry
