// A helper process for tests/test_files.cpp: starts writing an AtomicFile and stops before commit(), so the test can
// interrupt it with a signal and check that the temporary is removed. A fresh process, not a fork of the test: the
// signal handlers are installed once per process and doctest puts its own on SIGINT and SIGTERM while a test runs.
//
//   ferry_test_hold_temporary TARGET [--own-sigterm-handler]
//
// Prints "ready" on stdout once the temporary exists and holds data, then waits for a signal. With
// --own-sigterm-handler it installs a SIGTERM handler of its own first (exit status 42): ferry must leave it alone.
#include <signal.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <exception>
#include <random>
#include <vector>

#include "ferry/atomic_file.hpp"

namespace {

void own_sigterm_handler(int) { ::_exit(42); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  // Default actions, whatever the test runner passed down (a SIGHUP ignored under nohup would hide the cleanup).
  sigset_t unblock;
  sigemptyset(&unblock);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    ::signal(sig, SIG_DFL);
    sigaddset(&unblock, sig);
  }
  ::sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  if (argc > 2 && std::strcmp(argv[2], "--own-sigterm-handler") == 0) ::signal(SIGTERM, own_sigterm_handler);
  ::alarm(60);  // never outlives a test that failed before signalling it
  try {
    ferry::AtomicFile out(argv[1]);
    std::vector<std::byte> data(1 << 20);
    std::mt19937 rng(5);
    for (auto& b : data) b = static_cast<std::byte>(rng());
    out.write(data);
    if (::write(STDOUT_FILENO, "ready\n", 6) != 6) return 3;
    for (;;) ::pause();
  } catch (const std::exception&) {
    return 4;
  }
}
