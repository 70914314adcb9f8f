// Files that are not what an atomic writer or a mapped reader expects. AtomicFile: a symbolic link is written
// through (the link kept), a character device or FIFO is written in place (never renamed over), a directory, socket
// or block device is refused before anything is written; a write interrupted by SIGINT/SIGTERM/SIGHUP leaves no
// temporary and the process still dies by the signal; temporaries of dead writers are swept by the next write, those
// of live ones kept. MappedFile: a file truncated while mapped ends the process with a message naming it and exit
// status 1, while a SIGBUS anywhere else still kills.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/mapped_file.hpp"
#include "support/child_process.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

namespace fs = std::filesystem;
using ferry::AtomicFile;
using ferry::Error;
using ferry::ErrorCategory;
using ferry::write_file_atomically;
using ferry::test::contains;
using ferry::test::error_of;
using ferry::test::read_file_bytes;
using ferry::test::read_text;
using ferry::test::TempDir;
using ferry::test::wait_with_deadline;

namespace {

std::vector<std::byte> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

mode_t file_type(const fs::path& p) {
  struct stat st {};
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & S_IFMT;
}

// A process id that no longer exists: a child that exited and was reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return pid;
}

// A device node made here when we may (as root): a test that regresses then replaces a node of its own, never the
// machine's /dev/null. Empty when mknod is not allowed.
std::optional<fs::path> make_device(const fs::path& path, mode_t type, unsigned major_id, unsigned minor_id) {
  if (::mknod(path.c_str(), type | 0666, ::makedev(major_id, minor_id)) != 0) return std::nullopt;
  return path;
}

}  // namespace

TEST_CASE("AtomicFile: a symbolic link is written through; the link stays and the file it names gets the data") {
  TempDir dir;
  const fs::path real = dir.path() / "real.bin", link = dir.path() / "link.bin";
  { std::ofstream(real) << "the older content"; }
  fs::create_symlink("real.bin", link);  // relative: resolved against the link's folder, not the working directory
  const auto data = random_bytes(5000, 1);
  write_file_atomically(link, data);
  CHECK(fs::is_symlink(link));
  CHECK(fs::read_symlink(link) == "real.bin");
  CHECK(read_file_bytes(real) == data);
  CHECK(names_in(dir.path()) == std::vector<std::string>{"link.bin", "real.bin"});

  // A chain across folders, the last link dangling: the file is created where the chain ends, beside it.
  fs::create_directories(dir.path() / "a");
  fs::create_directories(dir.path() / "b");
  fs::create_directories(dir.path() / "c");
  fs::create_symlink("../b/second", dir.path() / "a" / "first");
  fs::create_symlink(dir.path() / "c" / "final.bin", dir.path() / "b" / "second");
  const auto data2 = random_bytes(3000, 2);
  {
    AtomicFile out(dir.path() / "a" / "first");
    out.write(data2);
    out.commit();
  }
  CHECK(fs::is_symlink(dir.path() / "a" / "first"));
  CHECK(fs::is_symlink(dir.path() / "b" / "second"));
  CHECK(read_file_bytes(dir.path() / "c" / "final.bin") == data2);
  CHECK(names_in(dir.path() / "a") == std::vector<std::string>{"first"});
  CHECK(names_in(dir.path() / "b") == std::vector<std::string>{"second"});
  CHECK(names_in(dir.path() / "c") == std::vector<std::string>{"final.bin"});

  // A link to a folder is refused like the folder; a loop of links is refused by name.
  fs::create_symlink("a", dir.path() / "to_folder");
  const std::string to_folder = error_of([&] { AtomicFile out(dir.path() / "to_folder"); }, ErrorCategory::IO);
  CHECK_MESSAGE(contains(to_folder, (dir.path() / "to_folder").string()), to_folder);
  CHECK_MESSAGE(contains(to_folder, "directory"), to_folder);
  CHECK(fs::is_symlink(dir.path() / "to_folder"));
  fs::create_symlink("loop2", dir.path() / "loop1");
  fs::create_symlink("loop1", dir.path() / "loop2");
  const std::string loop = error_of([&] { write_file_atomically(dir.path() / "loop1", data); }, ErrorCategory::IO);
  CHECK_MESSAGE(contains(loop, (dir.path() / "loop1").string()), loop);
  CHECK_MESSAGE(contains(loop, "symbolic links"), loop);
}

TEST_CASE("AtomicFile: a directory, a socket or a block device is refused before anything is written") {
  TempDir dir;
  const fs::path folder = dir.path() / "folder";
  fs::create_directories(folder);
  // Refused by the constructor: a multi-gigabyte output must not be written first and fail at the rename.
  const std::string message = error_of([&] { AtomicFile out(folder); }, ErrorCategory::IO);
  CHECK_MESSAGE(contains(message, folder.string()), message);
  CHECK_MESSAGE(contains(message, "is a directory"), message);
  CHECK(fs::is_directory(folder));

  const fs::path socket_path = dir.path() / "sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(socket_path.string().size() < sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, socket_path.c_str());
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  const std::string sock_message =
      error_of([&] { write_file_atomically(socket_path, random_bytes(10, 3)); }, ErrorCategory::IO);
  CHECK_MESSAGE(contains(sock_message, socket_path.string()), sock_message);
  CHECK_MESSAGE(contains(sock_message, "is a socket"), sock_message);
  CHECK(file_type(socket_path) == S_IFSOCK);
  ::close(fd);

  // A node of its own (loop device numbers), never opened: the refusal comes from the type alone.
  if (const auto block = make_device(dir.path() / "blockdev", S_IFBLK, 7, 0)) {
    const std::string block_message =
        error_of([&] { write_file_atomically(*block, random_bytes(10, 4)); }, ErrorCategory::IO);
    CHECK_MESSAGE(contains(block_message, block->string()), block_message);
    CHECK_MESSAGE(contains(block_message, "is a block device"), block_message);
    CHECK(file_type(*block) == S_IFBLK);
  } else {
    MESSAGE("block device sub-check skipped: mknod is not allowed here (not root)");
  }
  for (const std::string& name : names_in(dir.path())) CHECK_MESSAGE(name[0] != '.', "temporary left: " << name);
}

TEST_CASE("AtomicFile: a character device is written in place, never replaced") {
  TempDir dir;
  // As root, nodes made here (a regression then replaces them, not the machine's); otherwise the real ones, which a
  // regression cannot replace (no temporary can be created in /dev) but which then fail the test just the same.
  std::optional<fs::path> null_dev = make_device(dir.path() / "null", S_IFCHR, 1, 3);
  std::optional<fs::path> full_dev = make_device(dir.path() / "full", S_IFCHR, 1, 7);
  if (!null_dev || !full_dev) {
    if (::geteuid() == 0) {
      MESSAGE("character device check skipped: root without the right to mknod (the real /dev nodes are not risked)");
      return;
    }
    null_dev = "/dev/null";
    full_dev = "/dev/full";
  }
  const auto data = random_bytes(300000, 5);
  write_file_atomically(*null_dev, data);
  CHECK(file_type(*null_dev) == S_IFCHR);

  // /dev/full: every write fails with ENOSPC, which must reach the caller as an IO error naming the target.
  const std::string message = error_of(
      [&] {
        AtomicFile out(*full_dev);
        out.write(data);
        out.commit();
      },
      ErrorCategory::IO);
  CHECK_MESSAGE(contains(message, full_dev->string()), message);
  CHECK_MESSAGE(contains(message, std::strerror(ENOSPC)), message);
  CHECK(file_type(*full_dev) == S_IFCHR);
  for (const std::string& name : names_in(dir.path())) CHECK_MESSAGE(name[0] != '.', "temporary left: " << name);
}

TEST_CASE("AtomicFile: a FIFO is written in place and its reader gets every byte") {
  TempDir dir;
  const fs::path fifo = dir.path() / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // The read end is opened first, without blocking, so the writer's open returns at once; a writer that renamed over
  // the FIFO instead would leave this reader waiting, which the deadline below turns into a failure, not a hang.
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  REQUIRE(reader >= 0);
  const auto data = random_bytes(200000, 6);  // several pipe buffers: the writer blocks until the reader catches up
  std::string writer_error;
  std::thread writer([&] {
    try {
      AtomicFile out(fifo);
      for (size_t at = 0; at < data.size(); at += 70000)
        out.write(std::span(data).subspan(at, std::min<size_t>(70000, data.size() - at)));
      out.commit();
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
  });
  std::vector<std::byte> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{reader, POLLIN, 0};
    const int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (ready == 0) {
      FAIL_CHECK("the FIFO's reader got no end of file within 20 s (" << got.size() << " bytes read)");
      break;
    }
    if (ready < 0) continue;  // EINTR
    std::byte buffer[65536];
    const ssize_t n = ::read(reader, buffer, sizeof(buffer));
    if (n == 0) break;  // the writer closed: end of file
    if (n < 0) continue;
    got.insert(got.end(), buffer, buffer + n);
  }
  writer.join();
  ::close(reader);
  CHECK_MESSAGE(writer_error.empty(), writer_error);
  CHECK(got == data);
  CHECK(file_type(fifo) == S_IFIFO);
  CHECK(names_in(dir.path()) == std::vector<std::string>{"pipe"});
}

TEST_CASE("AtomicFile: temporaries of writers that died are removed by the next write, those of live ones kept") {
  TempDir dir;
  const std::string dead = std::to_string(dead_pid()), self = std::to_string(::getpid());
  const std::vector<std::string> stale = {".out.bin.ferry-tmp." + dead + ".3", ".out.bin.ferry-tmp." + dead + ".0"};
  const std::vector<std::string> kept = {
      ".out.bin.ferry-tmp." + self + ".999999",  // this process: a live writer
      ".out.bin.ferry-tmp.1.0",                  // init: alive (EPERM for others counts as alive too)
      ".other.bin.ferry-tmp." + dead + ".0",     // another target
      ".out.bin.ferry-tmp." + dead + ".3.bak",   // not exactly ferry's pattern
      ".out.bin.ferry-tmp." + dead + ".",
      ".out.bin.ferry-tmp.-" + dead + ".1",
      "out.bin.ferry-tmp." + dead + ".1",
      ".xout.bin.ferry-tmp." + dead + ".1",
      ".out.bin.tmp." + dead + ".1",
  };
  for (const auto& name : stale) std::ofstream(dir.path() / name) << "left by a killed writer";
  for (const auto& name : kept) std::ofstream(dir.path() / name) << "not ferry's to remove";
  fs::create_directories(dir.path() / (".out.bin.ferry-tmp." + dead + ".4"));  // not a regular file: kept
  const auto data = random_bytes(4000, 7);
  write_file_atomically(dir.path() / "out.bin", data);
  CHECK(read_file_bytes(dir.path() / "out.bin") == data);
  for (const auto& name : stale) CHECK_MESSAGE(!fs::exists(dir.path() / name), "stale temporary kept: " << name);
  for (const auto& name : kept) CHECK_MESSAGE(fs::exists(dir.path() / name), "removed: " << name);
  CHECK(fs::is_directory(dir.path() / (".out.bin.ferry-tmp." + dead + ".4")));
}

namespace {

struct Helper {
  pid_t pid = -1;
  int out = -1;  // its stdout
};

// Starts ferry_test_hold_temporary on `target` and waits (up to 20 s) for its "ready".
Helper start_holder(const fs::path& target, bool own_sigterm_handler) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    std::string exe = FERRY_HOLD_TEMPORARY_EXE, arg = target.string(), flag = "--own-sigterm-handler";
    char* argv[] = {exe.data(), arg.data(), own_sigterm_handler ? flag.data() : nullptr, nullptr};
    ::execv(exe.c_str(), argv);
    ::_exit(127);
  }
  ::close(fds[1]);
  Helper h{pid, fds[0]};
  std::string said;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!contains(said, "ready\n") && std::chrono::steady_clock::now() < deadline) {
    pollfd p{h.out, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buffer[64];
    const ssize_t n = ::read(h.out, buffer, sizeof(buffer));
    if (n <= 0) break;
    said.append(buffer, static_cast<size_t>(n));
  }
  CHECK_MESSAGE(contains(said, "ready\n"), "the helper did not get ready: '" << said << "'");
  return h;
}

}  // namespace

TEST_CASE("AtomicFile: SIGINT, SIGTERM or SIGHUP removes the live temporary, and the process still dies by it") {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    CAPTURE(sig);
    TempDir dir;
    const fs::path target = dir.path() / "out.bin";
    const Helper h = start_holder(target, false);
    const std::vector<std::string> before = names_in(dir.path());
    REQUIRE(before.size() == 1);
    CHECK_MESSAGE(before[0].rfind(".out.bin.ferry-tmp." + std::to_string(h.pid) + ".", 0) == 0, before[0]);
    CHECK(fs::file_size(dir.path() / before[0]) == (1u << 20));
    REQUIRE(::kill(h.pid, sig) == 0);
    const int status = wait_with_deadline(h.pid, 20);
    ::close(h.out);
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
    CHECK(names_in(dir.path()).empty());
  }
}

TEST_CASE("AtomicFile: a SIGTERM handler the program installed itself is left in place") {
  TempDir dir;
  const Helper h = start_holder(dir.path() / "out.bin", true);
  REQUIRE(::kill(h.pid, SIGTERM) == 0);
  const int status = wait_with_deadline(h.pid, 20);
  ::close(h.out);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 42);  // the helper's own handler ran, not ferry's
}

namespace {

// Runs `body` in a forked child with stderr to `err_path` and no core dumps; returns the wait status. The child never
// returns into doctest: it ends by _exit (0 when `body` returns, 99 when it throws) or by a signal.
template <typename F>
int in_child(const fs::path& err_path, F&& body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err < 0) ::_exit(98);
    ::dup2(err, STDERR_FILENO);
    ::alarm(20);
    try {
      body();
    } catch (...) {
      ::_exit(99);
    }
    ::_exit(0);
  }
  return wait_with_deadline(pid, 30);
}

}  // namespace

TEST_CASE("MappedFile: a file truncated while mapped ends the process with a message naming it, exit status 1") {
  TempDir dir;
  const fs::path model = dir.path() / "model.bin", err = dir.path() / "stderr.txt";
  write_file_atomically(model, random_bytes(64 * 1024, 8));
  const int status = in_child(err, [&] {
    ferry::MappedFile mapped(model);
    volatile std::byte first = mapped.bytes()[0];  // paged in before the truncation: not what the test is about
    (void)first;
    if (::truncate(model.c_str(), 0) != 0) ::_exit(97);
    volatile std::byte beyond = mapped.bytes()[40000];  // past the new end: SIGBUS
    (void)beyond;
  });
  const std::string message = read_text(err);
  CHECK_MESSAGE(WIFEXITED(status), "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK_MESSAGE(contains(message, "ferry: I/O error: " + model.string() + ": the file changed while it was in use"),
                message);
}

TEST_CASE("MappedFile's SIGBUS guard: a fault outside ferry's mappings still kills with SIGBUS") {
  TempDir dir;
  const fs::path model = dir.path() / "model.bin", other = dir.path() / "other.bin", err = dir.path() / "stderr.txt";
  write_file_atomically(model, random_bytes(64 * 1024, 9));
  write_file_atomically(other, random_bytes(64 * 1024, 10));
  // A mapping made without MappedFile, truncated: the guard (installed by the MappedFile) must not claim it.
  const int fault = in_child(err, [&] {
    ferry::MappedFile mapped(model);
    const int fd = ::open(other.c_str(), O_RDONLY);
    const void* p = ::mmap(nullptr, 64 * 1024, PROT_READ, MAP_PRIVATE, fd, 0);
    if (fd < 0 || p == MAP_FAILED || ::truncate(other.c_str(), 0) != 0) ::_exit(97);
    volatile std::byte beyond = static_cast<const std::byte*>(p)[40000];
    (void)beyond;
  });
  CHECK(WIFSIGNALED(fault));
  if (WIFSIGNALED(fault)) CHECK(WTERMSIG(fault) == SIGBUS);
  CHECK(read_text(err).empty());
  // A SIGBUS sent by kill(2) carries no fault address.
  const int sent = in_child(err, [&] {
    ferry::MappedFile mapped(model);
    ::kill(::getpid(), SIGBUS);
  });
  CHECK(WIFSIGNALED(sent));
  if (WIFSIGNALED(sent)) CHECK(WTERMSIG(sent) == SIGBUS);
  CHECK(read_text(err).empty());
}
