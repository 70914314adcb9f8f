// The `ferry` program run as a user runs it: `info` and `dump` on a good file (written here with GgufWriter) and on
// bad input (missing file, truncated files, unknown tensor, a type ferry cannot dequantize, wrong flags, a terminal
// as dump's output). Checks exit statuses, that stdout/stderr say the right things (the file, the tensor, the type),
// and that dump's output equals the reference dequantization bit for bit and appears atomically.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace {

using ferry::test::TempDir;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int status = -1;  // exit status; -1 if the process did not exit normally (a signal: a crash)
  std::string out, err;
};

// Runs FERRY_EXE with `args`; stdout and stderr are captured through files. With `stdout_tty`, stdout is a
// pseudo-terminal instead (its output is discarded).
Result run_ferry(const std::vector<std::string>& args, const fs::path& dir, bool stdout_tty = false) {
  const fs::path out_path = dir / "stdout.txt", err_path = dir / "stderr.txt";
  int pty_master = -1, pty_slave = -1;
  if (stdout_tty) REQUIRE(::openpty(&pty_master, &pty_slave, nullptr, nullptr, nullptr) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int out = stdout_tty ? pty_slave : ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = ::open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || in < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    std::string exe = FERRY_EXE;
    argv.push_back(exe.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  if (stdout_tty) ::close(pty_slave);
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  if (stdout_tty) ::close(pty_master);
  Result r;
  r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  if (!stdout_tty) r.out = read_text(out_path);
  r.err = read_text(err_path);
  return r;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Files in `dir` other than the capture files: a failed or finished dump must not leave temporaries behind.
std::vector<std::string> outputs_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "stdout.txt" && name != "stderr.txt" && name != "model.gguf") names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

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
      {{"frobnicate"}, "subcommand"},
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
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    CAPTURE(joined);
    const Result r = run_ferry(c.args, dir.path());
    // Non-zero, and not 1 (bad input) or 3 (internal): a usage error is told apart from a bad file.
    CHECK(r.status != 0);
    CHECK(r.status != 1);
    CHECK(r.status != 3);
    CHECK(r.status != -1);
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
