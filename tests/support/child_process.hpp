// Waiting for a child process without letting a hung child hang the test.
#pragma once

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

namespace ferry::test {

// Waits for `pid`; after `timeout_s` seconds kills it and fails the test. Returns the wait status.
inline int wait_with_deadline(pid_t pid, int timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  int wstatus = 0;
  for (;;) {
    const pid_t done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) return wstatus;
    REQUIRE(done == 0);
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      FAIL_CHECK("child process " << pid << " did not finish within " << timeout_s << " s: killed");
      return wstatus;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace ferry::test
