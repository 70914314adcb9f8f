// Where an output named by the user really goes. An atomic write replaces the target with a new file by rename(2),
// which is right for a regular file and wrong for everything else: renaming over a symbolic link replaces the link,
// over /dev/null replaces the device node (as root), over a FIFO cuts off its reader. So the target is looked at
// first: links are followed to the file they name, character devices and FIFOs are written in place, and the types
// where neither makes sense are refused before a byte is written.
#pragma once

#include <filesystem>

namespace ferry::detail {

enum class WriteMode {
  REPLACE,        // absent or a regular file: write a temporary beside it and rename it over
  WRITE_THROUGH,  // a character device or a FIFO: open it and write to it, no temporary, no rename
};

struct WriteTarget {
  std::filesystem::path path;  // the target with every symbolic link of its last component followed
  WriteMode mode = WriteMode::REPLACE;
};

// Throws IO naming `target` (and the file its links lead to) for a directory, a socket, a block device, a link loop
// or a target that cannot be inspected.
WriteTarget resolve_write_target(const std::filesystem::path& target);

}  // namespace ferry::detail
