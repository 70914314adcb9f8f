// Running the `ferry` program (FERRY_EXE) as a user would, for the CLI tests: a child process with captured stdout and
// stderr, an optional pseudo-terminal or file as stdout, extra environment variables, an address-space limit, and a
// deadline after which the child is killed and the test fails (a ferry that hangs cannot hang the suite).
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/asan.hpp"
#include "support/child_process.hpp"
#include "support/text.hpp"

namespace ferry::test {

struct Result {
  int status = -1;  // exit status; -1 if the process did not exit normally (a signal: a crash)
  int signal = 0;   // the signal that ended it, if one did
  std::string out, err;
};

using Environment = std::vector<std::pair<std::string, std::string>>;

struct RunSpec {
  bool stdout_tty = false;           // stdout is a pseudo-terminal (its output is discarded)
  std::string stdout_path;           // non-empty: stdout is this file, opened for writing (e.g. /dev/full)
  std::string stdin_path;            // non-empty: stdin is this file (else /dev/null)
  Environment env;                   // added to (or replacing in) this process's environment
  int timeout_s = 300;               // killed and failed after this
  uint64_t address_space_limit = 0;  // non-zero: RLIMIT_AS of the child, in bytes (`ulimit -v`)
};

// Runs FERRY_EXE with `args`; stdout and stderr are captured through files in `dir`.
inline Result run_ferry(const std::vector<std::string>& args, const std::filesystem::path& dir, const RunSpec& spec) {
  const std::filesystem::path out_path = dir / "stdout.txt", err_path = dir / "stderr.txt";
  // Built before fork: the child only calls async-signal-safe functions.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const bool replaced = std::any_of(spec.env.begin(), spec.env.end(), [&](const auto& kv) {
      return entry.size() > kv.first.size() && entry.compare(0, kv.first.size(), kv.first) == 0 &&
             entry[kv.first.size()] == '=';
    });
    if (!replaced) env_strings.push_back(entry);
  }
  for (const auto& [name, value] : spec.env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  std::string exe = FERRY_EXE;
  argv.push_back(exe.data());
  std::vector<std::string> copy = args;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string stdout_target = spec.stdout_path.empty() ? out_path.string() : spec.stdout_path;
  const std::string stdin_source = spec.stdin_path.empty() ? std::string("/dev/null") : spec.stdin_path;
  int pty_master = -1, pty_slave = -1;
  if (spec.stdout_tty) REQUIRE(::openpty(&pty_master, &pty_slave, nullptr, nullptr, nullptr) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int out = spec.stdout_tty ? pty_slave : ::open(stdout_target.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open(stdin_source.c_str(), O_RDONLY);
    if (out < 0 || err < 0 || in < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    if (spec.address_space_limit > 0) {
      const rlimit limit{spec.address_space_limit, spec.address_space_limit};
      if (::setrlimit(RLIMIT_AS, &limit) != 0) ::_exit(125);
    }
    ::execve(exe.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  if (spec.stdout_tty) ::close(pty_slave);
  const int wstatus = wait_with_deadline(pid, spec.timeout_s);
  if (spec.stdout_tty) ::close(pty_master);
  Result r;
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  r.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  if (!spec.stdout_tty && spec.stdout_path.empty()) r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

inline Result run_ferry(const std::vector<std::string>& args, const std::filesystem::path& dir, bool stdout_tty = false,
                        const Environment& env = {}, int timeout_s = 300) {
  RunSpec spec;
  spec.stdout_tty = stdout_tty;
  spec.env = env;
  spec.timeout_s = timeout_s;
  return run_ferry(args, dir, spec);
}

// `ferry` running in the background with a pipe as its standard input, for interactive commands: the test writes
// lines, watches the output files grow, sends signals, then closes the input and waits.
class RunningFerry {
 public:
  RunningFerry(const std::vector<std::string>& args, const std::filesystem::path& dir, const Environment& env = {})
      : m_out(dir / "stdout.txt"), m_err(dir / "stderr.txt") {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe = FERRY_EXE;
    std::vector<std::string> copy = args;
    std::vector<char*> argv{exe.data()};
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    const std::string out = m_out.string(), err = m_err.string();
    // Output of an earlier command in `dir` must not read as this one's before the child has opened its files.
    std::filesystem::remove(m_out);
    std::filesystem::remove(m_err);
    m_pid = ::fork();
    REQUIRE(m_pid >= 0);
    if (m_pid == 0) {
      const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (o < 0 || e < 0) ::_exit(126);
      ::dup2(pipe_fds[0], 0);
      ::dup2(o, 1);
      ::dup2(e, 2);
      ::close(pipe_fds[1]);
      ::execve(exe.c_str(), argv.data(), envp.data());
      ::_exit(127);
    }
    ::close(pipe_fds[0]);
    m_stdin = pipe_fds[1];
  }
  ~RunningFerry() {
    close_stdin();
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      int status = 0;
      ::waitpid(m_pid, &status, 0);
    }
  }
  RunningFerry(const RunningFerry&) = delete;
  RunningFerry& operator=(const RunningFerry&) = delete;

  void write_stdin(const std::string& text) {
    REQUIRE(m_stdin >= 0);
    REQUIRE(::write(m_stdin, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  }
  void close_stdin() {
    if (m_stdin >= 0) ::close(m_stdin);
    m_stdin = -1;
  }
  void signal(int sig) { REQUIRE(::kill(m_pid, sig) == 0); }
  // Whether the process has ended (it is not reaped: wait() still reports how).
  bool finished() const {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(m_pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == m_pid;
  }
  std::string out() const { return read_text(m_out); }
  std::string err() const { return read_text(m_err); }
  // Polls until `ready()` holds (true) or `timeout_s` passes (false).
  template <class Ready>
  bool wait_for(Ready ready, int timeout_s) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (!ready()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
  Result wait(int timeout_s = 300) {
    close_stdin();
    const int wstatus = wait_with_deadline(m_pid, timeout_s);
    m_pid = -1;
    Result r;
    r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    r.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    r.out = out();
    r.err = err();
    return r;
  }

 private:
  std::filesystem::path m_out, m_err;
  pid_t m_pid = -1;
  int m_stdin = -1;
};

// "ferry ARGS..." as a user would type it, for messages about a command (CAPTURE).
inline std::string command_line(const std::vector<std::string>& args) {
  std::string line = "ferry";
  for (const auto& a : args) line += " " + a;
  return line;
}

// Files in `dir` other than the capture files and a model: a failed or finished command must not leave temporaries.
inline std::vector<std::string> outputs_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "stdout.txt" && name != "stderr.txt" && name != "model.gguf") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// A tiny synthetic llama model written by `ferry make-model`, as a user would make one.
inline std::filesystem::path make_tiny_model(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "model.gguf";
  const Result r =
      run_ferry({"make-model", "--preset", "tiny", "--type", "q8_0", "--seed", "3", "-o", path.string()}, dir);
  REQUIRE_MESSAGE(r.status == 0, r.err);
  return path;
}

}  // namespace ferry::test
