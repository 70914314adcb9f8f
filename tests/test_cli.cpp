// The `ferry` program run as a user runs it: `info` and `dump` on a good file (written here with GgufWriter) and on
// bad input (missing file, truncated files, unknown tensor, a type ferry cannot dequantize, wrong flags, a terminal
// as dump's output). Checks exit statuses, that stdout/stderr say the right things (the file, the tensor, the type),
// and that dump's output equals the reference dequantization bit for bit and appears atomically. Files of unusual
// types: a FIFO as the model, links, devices and folders as outputs, a model truncated while `ferry run` uses it.
// `run` generates from a tiny model made with `ferry make-model` and from the built-in default model in a private
// FERRY_CACHE_DIR (test_cli_run.cpp; its fetch's fallbacks: test_cli_default_model.cpp); `perplexity` and
// `--logits-out`: test_cli_perplexity.cpp.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "support/ferry_process.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

using ferry::test::TempDir;
using namespace ferry::test;


constexpr uint64_t kBigU64 = (uint64_t{1} << 60) + 1;  // not exact in a double: JSON must give a string

// A small model: F32, Q8_0 and Q4_K tensors from random weights, and an IQ2_XXS tensor (listed but not
// dequantizable), alignment 64, metadata with a long string array and a 64-bit value beyond 2^53.
struct GoodModel {
  std::vector<float> embd = ferry::test::random_weights(64 * 3, ferry::test::test_seed(11), 0.5f);
  std::vector<std::byte> q8, q4k, iq2;
  fs::path path;

  explicit GoodModel(const fs::path& dir) : path(dir / "model.gguf") {
    const auto w_q8 = ferry::test::random_weights(64 * 5, ferry::test::test_seed(12), 0.5f);
    const auto w_q4k = ferry::test::random_weights(256 * 3, ferry::test::test_seed(13), 0.5f);
    q8.resize(ferry::row_bytes(ferry::GgmlType::Q8_0, 64) * 5);
    q4k.resize(ferry::row_bytes(ferry::GgmlType::Q4_K, 256) * 3);
    ferry::ref::quantize(ferry::GgmlType::Q8_0, w_q8.data(), q8.data(), 64 * 5);
    ferry::ref::quantize(ferry::GgmlType::Q4_K, w_q4k.data(), q4k.data(), 256 * 3);
    iq2.resize(ferry::row_bytes(ferry::GgmlType::IQ2_XXS, 256) * 2);
    std::mt19937 rng(ferry::test::test_seed(14));
    for (auto& b : iq2) b = static_cast<std::byte>(rng());

    ferry::GgufWriter w(64);
    w.set("general.architecture", ferry::GgufValue::string("llama"));
    w.set("general.name", ferry::GgufValue::string("cli test"));
    w.set("llama.block_count", ferry::GgufValue::scalar<uint32_t>(1));
    w.set("test.big", ferry::GgufValue::scalar<uint64_t>(kBigU64));
    w.set("test.float", ferry::GgufValue::scalar<float>(0.25f));
    std::vector<std::string> tokens;
    for (int i = 0; i < 40; ++i) tokens.push_back("tok" + std::to_string(i));
    w.set("tokenizer.ggml.tokens", ferry::GgufValue::string_array(tokens));
    w.add_tensor("token_embd.weight", ferry::GgmlType::F32, {64, 3}, std::as_bytes(std::span<const float>(embd)));
    w.add_tensor("blk.0.attn_q.weight", ferry::GgmlType::Q8_0, {64, 5}, std::span<const std::byte>(q8));
    w.add_tensor("blk.0.attn_k.weight", ferry::GgmlType::Q4_K, {256, 3}, std::span<const std::byte>(q4k));
    w.add_tensor("blk.0.ffn_down.weight", ferry::GgmlType::IQ2_XXS, {256, 2}, std::span<const std::byte>(iq2));
    w.write(path);
  }
};

std::vector<float> expected_dequantized(const ferry::GgufFile& file, const std::string& name) {
  const ferry::GgufTensorInfo& t = file.tensor(name);
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  ferry::ref::dequantize(t.type, file.tensor_data(t).data(), out.data(), t.n_elements);
  return out;
}

std::vector<float> read_floats(const fs::path& p) {
  const std::string bytes = read_text(p);
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("ferry info: human form lists the metadata, types and tensors") {
  TempDir dir;
  GoodModel model(dir.path());
  const Result r = run_ferry({"info", model.path.string()}, dir.path());
  CHECK(r.status == 0);
  CHECK(r.err.empty());
  for (const char* text :
       {"architecture", "llama", "cli test", "token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
        "blk.0.ffn_down.weight", "Q8_0", "Q4_K", "IQ2_XXS", "1152921504606846977", "[STRING x 40] \"tok0\", \"tok1\"",
        "(35 more)", "alignment 64", "64 x 3"})
    CHECK_MESSAGE(contains(r.out, text), "missing: " << text);
  CHECK_FALSE(contains(r.out, "tok39"));  // the long array is summarised, not printed
}

TEST_CASE("ferry info --json reports what GgufFile reads, big integers as strings") {
  TempDir dir;
  GoodModel model(dir.path());
  const Result r = run_ferry({"info", "--json", model.path.string()}, dir.path());
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  const ferry::GgufFile file = ferry::GgufFile::open(model.path);
  CHECK(j["version"] == 3);
  CHECK(j["alignment"] == 64);
  CHECK(j["metadata"]["general.name"] == "cli test");
  CHECK(j["metadata"]["test.big"] == std::to_string(kBigU64));
  CHECK(j["metadata"]["test.float"].get<double>() == 0.25);
  CHECK(j["metadata"]["llama.block_count"] == 1);
  REQUIRE(j["metadata"]["tokenizer.ggml.tokens"].size() == 40);  // full in JSON
  CHECK(j["metadata"]["tokenizer.ggml.tokens"][39] == "tok39");
  REQUIRE(j["tensors"].size() == file.tensors().size());
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const ferry::GgufTensorInfo& t = file.tensors()[i];
    const auto& jt = j["tensors"][i];
    CHECK(jt["name"] == t.name);
    CHECK(jt["type"] == std::string(ferry::type_name(t.type)));
    CHECK(jt["ne"].get<std::vector<int64_t>>() == t.ne);
    CHECK(jt["file_offset"] == t.file_offset);
    CHECK(jt["file_offset"].get<uint64_t>() % 64 == 0);
    CHECK(jt["n_bytes"] == t.n_bytes);
  }
  CHECK(j["tensors"][2]["type"] == "Q4_K");
}

TEST_CASE("ferry dump writes the reference dequantization, atomically") {
  TempDir dir;
  GoodModel model(dir.path());
  const ferry::GgufFile file = ferry::GgufFile::open(model.path);
  for (const char* name : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight"}) {
    CAPTURE(name);
    const fs::path out = dir.path() / (std::string(name) + ".f32");
    { std::ofstream(out) << "an older file that dump must replace"; }
    const Result r = run_ferry({"dump", model.path.string(), name, "-o", out.string()}, dir.path());
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    CHECK(contains(r.out, name));
    const std::vector<float> got = read_floats(out);
    CHECK(fs::file_size(out) == static_cast<uintmax_t>(file.tensor(name).n_elements) * 4);
    CHECK(bitwise_equal(got, expected_dequantized(file, name)));
  }
  // F32 is a copy: the output is the original floats.
  CHECK(bitwise_equal(read_floats(dir.path() / "token_embd.weight.f32"), model.embd));
  CHECK(outputs_in(dir.path()) ==
        std::vector<std::string>{"blk.0.attn_k.weight.f32", "blk.0.attn_q.weight.f32", "token_embd.weight.f32"});
}

TEST_CASE("ferry info and dump on a missing file name it") {
  TempDir dir;
  const std::string missing = (dir.path() / "no_such_model.gguf").string();
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"info", missing}, std::vector<std::string>{"info", "--json", missing},
        std::vector<std::string>{"dump", missing, "x", "-o", "out.f32"}}) {
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK_MESSAGE(contains(r.err, missing), r.err);
    CHECK(contains(r.err, "ferry: "));
  }
}

TEST_CASE("ferry info and dump on truncated files fail cleanly, naming the file") {
  TempDir dir;
  GoodModel model(dir.path());
  const std::string bytes = read_text(model.path);
  const ferry::GgufFile file = ferry::GgufFile::open(model.path);
  const uint64_t data_offset = file.data_offset();
  const ferry::GgufTensorInfo& last = file.tensors().back();
  const uint64_t data_end = last.file_offset + last.n_bytes;  // the padding after it may be cut without harm
  // Inside the magic, the header, the metadata, the tensor table, just before the data, inside the data, one byte
  // short of the last tensor's end.
  for (uint64_t cut : {uint64_t{0}, uint64_t{3}, uint64_t{10}, uint64_t{60}, data_offset / 2, data_offset - 1,
                       data_offset + 100, data_end - 1}) {
    CAPTURE(cut);
    const fs::path p = dir.path() / ("truncated_" + std::to_string(cut) + ".gguf");
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(cut));
    const Result info = run_ferry({"info", p.string()}, dir.path());
    CHECK(info.status == 1);  // not a crash (-1) and not an internal error (3)
    CHECK_MESSAGE(contains(info.err, p.string()), info.err);
    CHECK(info.out.empty());
    const fs::path out = dir.path() / "truncated.f32";
    const Result dump = run_ferry({"dump", p.string(), "token_embd.weight", "-o", out.string()}, dir.path());
    CHECK(dump.status == 1);
    CHECK_MESSAGE(contains(dump.err, p.string()), dump.err);
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("ferry dump: an unknown tensor is named, with the file and a close name") {
  TempDir dir;
  GoodModel model(dir.path());
  const fs::path out = dir.path() / "out.f32";
  const Result r = run_ferry({"dump", model.path.string(), "blk.0.attn_qq.weight", "-o", out.string()}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "'blk.0.attn_qq.weight'"), r.err);
  CHECK(contains(r.err, model.path.string()));
  CHECK(contains(r.err, "did you mean 'blk.0.attn_q.weight'"));
  CHECK_FALSE(fs::exists(out));
  const Result far =
      run_ferry({"dump", model.path.string(), "zzzzzzzzzzzzzzzzzzzzzzzz", "-o", out.string()}, dir.path());
  CHECK(far.status == 1);
  CHECK(contains(far.err, "zzzzzzzzzzzzzzzzzzzzzzzz"));
  CHECK_FALSE(contains(far.err, "did you mean"));
}

TEST_CASE("ferry dump: a type ferry cannot dequantize is refused by name") {
  TempDir dir;
  GoodModel model(dir.path());
  const fs::path out = dir.path() / "out.f32";
  const Result r = run_ferry({"dump", model.path.string(), "blk.0.ffn_down.weight", "-o", out.string()}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "IQ2_XXS"), r.err);
  CHECK(contains(r.err, "blk.0.ffn_down.weight"));
  CHECK(contains(r.err, model.path.string()));
  CHECK(outputs_in(dir.path()).empty());
}

TEST_CASE("ferry dump: an output that cannot be created is named and nothing is left behind") {
  TempDir dir;
  GoodModel model(dir.path());
  const fs::path out = dir.path() / "no_such_dir" / "out.f32";
  const Result r = run_ferry({"dump", model.path.string(), "token_embd.weight", "-o", out.string()}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, out.string()), r.err);
  CHECK(outputs_in(dir.path()).empty());
}

TEST_CASE("ferry dump: standard output when it is not a terminal, refused when it is") {
  TempDir dir;
  GoodModel model(dir.path());
  const ferry::GgufFile file = ferry::GgufFile::open(model.path);
  const Result piped = run_ferry({"dump", model.path.string(), "blk.0.attn_k.weight"}, dir.path());
  CHECK(piped.status == 0);
  std::vector<float> got(piped.out.size() / 4);
  std::memcpy(got.data(), piped.out.data(), got.size() * 4);
  CHECK(piped.out.size() % 4 == 0);
  CHECK(bitwise_equal(got, expected_dequantized(file, "blk.0.attn_k.weight")));
  const Result tty = run_ferry({"dump", model.path.string(), "blk.0.attn_k.weight"}, dir.path(), /*stdout_tty=*/true);
  CHECK(tty.status == 2);
  CHECK_MESSAGE(contains(tty.err, "-o FILE"), tty.err);
}

TEST_CASE("ferry: wrong flags are usage errors") {
  TempDir dir;
  GoodModel model(dir.path());
  const std::string m = model.path.string();
  struct Case {
    std::vector<std::string> args;
    const char* mentioned;  // stderr must name what was wrong
  };
  const std::vector<Case> cases = {
      {{}, "subcommand"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"info"}, "MODEL"},
      {{"info", m, "--bogus"}, "--bogus"},
      {{"info", m, "extra"}, "extra"},
      {{"dump", m}, "TENSOR"},
      {{"dump", m, "token_embd.weight", "-o"}, "-o"},
      {{"make-model", "--arch", "flux", "--preset", "tiny", "--type", "q4_0", "-o", "x.gguf"}, "flux"},
      {{"make-model", "--arch", "llama", "--preset", "llama-9", "--type", "q4_0", "-o", "x.gguf"}, "llama-9"},
      {{"make-model", "--arch", "llama", "--preset", "tiny", "--type", "q9_9", "-o", "x.gguf"}, "q9_9"},
  };
  for (const Case& c : cases) {
    const std::string command = command_line(c.args);
    CAPTURE(command);
    const Result r = run_ferry(c.args, dir.path());
    // Exactly 2: a usage error is told apart from a bad file (1) and an internal error (3).
    CHECK(r.status == 2);
    CHECK_MESSAGE(contains(r.err, c.mentioned), r.err);
  }
  CHECK(outputs_in(dir.path()).empty());
}

TEST_CASE("ferry dump: a tensor larger than one conversion chunk is converted whole") {
  // dump converts 4 Mi elements at a time; 2080 x 2100 = 4,368,000 elements spans two chunks, the second partial.
  TempDir dir;
  const std::vector<int64_t> ne = {2080, 2100};
  const auto weights =
      ferry::test::random_weights(static_cast<size_t>(ne[0] * ne[1]), ferry::test::test_seed(21), 0.5f);
  std::vector<std::byte> q(ferry::row_bytes(ferry::GgmlType::Q8_0, ne[0]) * static_cast<size_t>(ne[1]));
  ferry::ref::quantize(ferry::GgmlType::Q8_0, weights.data(), q.data(), ne[0] * ne[1]);
  ferry::GgufWriter w;
  w.add_tensor("big.weight", ferry::GgmlType::Q8_0, ne, std::span<const std::byte>(q));
  const fs::path model = dir.path() / "model.gguf";
  w.write(model);
  const fs::path out = dir.path() / "big.f32";
  const Result r = run_ferry({"dump", model.string(), "big.weight", "-o", out.string()}, dir.path());
  CHECK(r.status == 0);
  const ferry::GgufFile file = ferry::GgufFile::open(model);
  CHECK(bitwise_equal(read_floats(out), expected_dequantized(file, "big.weight")));
  CHECK(outputs_in(dir.path()) == std::vector<std::string>{"big.f32"});
}

TEST_CASE("ferry info, dump and run: a FIFO as the model is refused at once, not waited on") {
  TempDir dir;
  const fs::path fifo = dir.path() / "model.gguf";  // nobody ever opens it for writing
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"info", fifo.string()},
        std::vector<std::string>{"dump", fifo.string(), "token_embd.weight", "-o", (dir.path() / "x.f32").string()},
        std::vector<std::string>{"run", fifo.string(), "--policy", "cpu-all", "-n", "1"}}) {
    CAPTURE(args[0]);
    const Result r = run_ferry(args, dir.path(), false, {}, /*timeout_s=*/20);
    CHECK(r.status == 1);
    CHECK_MESSAGE(contains(r.err, fifo.string() + ": not a regular file (it is a FIFO)"), r.err);
  }
  CHECK(outputs_in(dir.path()).empty());
}

namespace {

// Character devices to write to: nodes made in `dir` as root (a regression then replaces them, not the machine's), the
// real /dev/null and /dev/full otherwise (a regression cannot replace those without root, and fails just the same).
// Nothing when running as root without the right to mknod.
std::optional<std::pair<fs::path, fs::path>> null_and_full(const fs::path& dir) {
  const fs::path null_dev = dir / "null", full_dev = dir / "full";
  if (::mknod(null_dev.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0 &&
      ::mknod(full_dev.c_str(), S_IFCHR | 0666, ::makedev(1, 7)) == 0)
    return std::pair{null_dev, full_dev};
  if (::geteuid() == 0) return std::nullopt;
  return std::pair{fs::path("/dev/null"), fs::path("/dev/full")};
}

bool is_char_device(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}

}  // namespace


TEST_CASE("ferry make-model, dump -o, run --trace: links written through, devices in place, folders refused") {
  TempDir dir;
  GoodModel model(dir.path());
  const fs::path real = dir.path() / "real.gguf", link = dir.path() / "link.gguf";
  { std::ofstream(real) << "an older file"; }
  fs::create_symlink("real.gguf", link);
  const Result made = run_ferry({"make-model", "--preset", "tiny", "-o", link.string()}, dir.path());
  CHECK(made.status == 0);
  CHECK(fs::is_symlink(link));
  CHECK(ferry::GgufFile::open(real).tensors().size() > 0);

  const fs::path folder = dir.path() / "folder";
  fs::create_directories(folder);
  const Result to_folder =
      run_ferry({"dump", model.path.string(), "token_embd.weight", "-o", folder.string()}, dir.path());
  CHECK(to_folder.status == 1);
  CHECK_MESSAGE(contains(to_folder.err, folder.string() + ": is a directory"), to_folder.err);
  CHECK(fs::is_empty(folder));

  std::vector<std::string> expected = {"folder", "link.gguf", "real.gguf"};
  if (const auto devices = null_and_full(dir.path())) {
    const auto& [null_dev, full_dev] = *devices;
    const Result to_null = run_ferry({"make-model", "--preset", "tiny", "-o", null_dev.string()}, dir.path());
    CHECK(to_null.status == 0);
    CHECK(is_char_device(null_dev));
    const Result to_full =
        run_ferry({"dump", model.path.string(), "token_embd.weight", "-o", full_dev.string()}, dir.path());
    CHECK(to_full.status == 1);
    CHECK_MESSAGE(contains(to_full.err, full_dev.string() + ": cannot write: " + std::strerror(ENOSPC)), to_full.err);
    CHECK(is_char_device(full_dev));
    const Result trace =
        run_ferry({"run", real.string(), "--policy", "cpu-all", "-n", "2", "--trace", null_dev.string()}, dir.path());
    CHECK(trace.status == 0);
    CHECK(is_char_device(null_dev));
    if (null_dev.parent_path() == dir.path()) expected = {"folder", "full", "link.gguf", "null", "real.gguf"};
  } else {
    MESSAGE("device sub-checks skipped: root without the right to mknod (the real /dev nodes are not risked)");
  }
  CHECK(outputs_in(dir.path()) == expected);  // no temporaries left behind
}

TEST_CASE("ferry run: a model truncated while it runs is named, exit status 1 (not a bare SIGBUS)") {
  TempDir dir;
  const fs::path model = dir.path() / "tiny.gguf", err_path = dir.path() / "stderr.txt";
  REQUIRE(run_ferry({"make-model", "--preset", "tiny", "-o", model.string()}, dir.path()).status == 0);
  // stdout is a pipe filled to the brim before ferry starts: its first write (the prompt, printed before generation
  // reads the weights) blocks, so ferry cannot finish with the file before the test has truncated it.
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  REQUIRE(::fcntl(fds[1], F_SETFL, O_NONBLOCK) == 0);
  const std::string filler(4096, 'x');
  while (::write(fds[1], filler.data(), filler.size()) > 0) {
  }
  REQUIRE(errno == EAGAIN);
  REQUIRE(::fcntl(fds[1], F_SETFL, 0) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    if (err < 0 || in < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(fds[1], 1);
    ::dup2(err, 2);
    std::string exe = FERRY_EXE, run = "run", m = model.string(), policy = "--policy", cpu = "cpu-all", n = "-n",
                count = "16";
    char* argv[] = {exe.data(), run.data(), m.data(), policy.data(), cpu.data(), n.data(), count.data(), nullptr};
    ::execv(exe.c_str(), argv);
    ::_exit(127);
  }
  ::close(fds[1]);
  // Once the model shows among ferry's mappings, truncating it makes ferry's next read of it fault.
  const std::string mapped_name = fs::canonical(model).string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool mapped = false;
  while (!mapped && std::chrono::steady_clock::now() < deadline) {
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::stringstream ss;
    ss << maps.rdbuf();
    mapped = contains(ss.str(), mapped_name);
    if (!mapped) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK_MESSAGE(mapped, "ferry never mapped " << mapped_name);
  REQUIRE(::truncate(model.c_str(), 0) == 0);
  // Drain stdout (the filler, then whatever ferry prints) until ferry closes it, within the deadline.
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fds[0], POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) break;
    char buffer[65536];
    if (::read(fds[0], buffer, sizeof(buffer)) <= 0) break;
  }
  ::close(fds[0]);
  const int wstatus = wait_with_deadline(pid, 30);
  const std::string err = read_text(err_path);
  CHECK_MESSAGE(WIFEXITED(wstatus), "killed by signal " << (WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0));
  CHECK(WEXITSTATUS(wstatus) == 1);
  CHECK_MESSAGE(contains(err, "ferry: I/O error: " + model.string() +
                                  ": the file changed while it was in use (truncated or overwritten)"),
                err);
}
