// `ferry run` as a user runs it: greedy generation on a tiny model made with `ferry make-model`, the built-in default
// model in a private FERRY_CACHE_DIR, and every way a run can be refused: flags checked before the model is loaded
// (exit 2, naming the flag), a prompt or context that does not fit, standard output that cannot be written, weights
// holding NaN (exit 1, naming the tensor), a context larger than the host can hold, and memory limits (an error, never
// a crash).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/text/utf8.hpp"
#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

TEST_CASE("ferry run: greedy generation on a tiny model is reproducible and follows the prompt") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::string prompt = "The quick brown fox";
  const Result first = run_ferry({"run", model, "-n", "5", "-p", prompt}, dir.path());
  REQUIRE_MESSAGE(first.status == 0, first.err);
  CHECK(first.out.starts_with(prompt));
  CHECK(first.out.size() > prompt.size() + 1);  // some text was generated after the prompt
  CHECK_MESSAGE(contains(first.err, "generation: 5 tokens"), first.err);
  CHECK(contains(first.err, "prompt: "));
  const Result second = run_ferry({"run", model, "-n", "5", "-p", prompt}, dir.path());
  REQUIRE_MESSAGE(second.status == 0, second.err);
  CHECK(second.out == first.out);  // temperature 0 (the default) is greedy: the same text every time
}

TEST_CASE("ferry run --policy cpu-all runs every layer on the CPU, with or without a GPU") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result r = run_ferry({"run", model, "-n", "3", "-p", "Hello", "--policy", "cpu-all"}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(r.out.starts_with("Hello"));
  CHECK_MESSAGE(contains(r.err, "device memory: none"), r.err);
  CHECK(contains(r.err, "--policy cpu-all"));
}

TEST_CASE("ferry run: a bad --vram or --policy is a usage error naming the flag") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  struct Case {
    std::vector<std::string> args;
    std::vector<const char*> mentioned;
  };
  const std::vector<Case> cases = {
      {{"run", model, "-n", "2", "--vram", "garbage"}, {"--vram", "garbage"}},
      {{"run", model, "-n", "2", "--policy", "nope"}, {"--policy", "nope"}},
      {{"run", model, "-n", "-3"}, {"-n"}},
      {{"run", model, "--top-p", "1.5"}, {"--top-p"}},
  };
  for (const Case& c : cases) {
    const std::string command = command_line(c.args);
    CAPTURE(command);
    const Result r = run_ferry(c.args, dir.path());
    CHECK(r.status == 2);
    for (const std::string text : c.mentioned)
      CHECK_MESSAGE(contains(r.err, text), "missing '" << text << "': " << r.err);
  }
}

TEST_CASE("ferry run: a missing model file is bad input, named") {
  TempDir dir;
  const std::string missing = (dir.path() / "no_such_model.gguf").string();
  const Result r = run_ferry({"run", missing, "-n", "2"}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, missing), r.err);
}

TEST_CASE("ferry run without a model makes the synthetic default model once, in FERRY_CACHE_DIR, then reuses it") {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";  // does not exist yet: ferry creates it
  // FERRY_DEFAULT_MODEL=synthetic: offline and fast (the real model's fetch is test_default_model_fetch's).
  const Environment env = {{"FERRY_CACHE_DIR", cache.string()}, {"FERRY_DEFAULT_MODEL", "synthetic"}};
  const char* announcement = "generating the built-in default model";
  const Result first = run_ferry({"run", "-n", "2", "-p", "Hi"}, dir.path(), false, env);
  REQUIRE_MESSAGE(first.status == 0, first.err);
  CHECK_MESSAGE(contains(first.err, announcement), first.err);
  CHECK(contains(first.err, cache.string()));
  CHECK(first.out.starts_with("Hi"));
  std::vector<fs::path> cached;
  for (const auto& e : fs::directory_iterator(cache)) cached.push_back(e.path());
  REQUIRE(cached.size() == 1);  // the model and nothing else (no temporary left behind)
  CHECK(cached[0].extension() == ".gguf");
  const auto written = fs::last_write_time(cached[0]);
  const Result second = run_ferry({"run", "-n", "2", "-p", "Hi"}, dir.path(), false, env);
  REQUIRE_MESSAGE(second.status == 0, second.err);
  CHECK_MESSAGE(!contains(second.err, announcement), second.err);
  CHECK(second.out == first.out);
  CHECK(fs::last_write_time(cached[0]) == written);  // reused, not rewritten
  CHECK(std::distance(fs::directory_iterator(cache), fs::directory_iterator{}) == 1);
}

TEST_CASE("ferry run: every flag is checked before the model is loaded, naming the flag") {
  TempDir dir;
  // The model does not exist: a flag error must come first, proving nothing was loaded.
  const std::string missing = (dir.path() / "not_loaded.gguf").string();
  struct Case {
    std::vector<std::string> flags;
    std::vector<std::string> mentioned;
  };
  const std::vector<Case> cases = {
      {{"--temp", "nan"}, {"--temp", "nan"}},
      {{"--temp", "-1"}, {"--temp"}},
      {{"--top-p", "nan"}, {"--top-p"}},
      {{"--top-p", "0"}, {"--top-p", "(0, 1]"}},
      {{"--seed", "-1"}, {"--seed", "'-1'"}},
      {{"--seed", "18446744073709551616"}, {"--seed", "larger than"}},
      {{"--seed", "12abc"}, {"--seed", "'12abc'"}},
      {{"--vram", "1e30"}, {"--vram", "too large"}},
      {{"--vram", "garbage"}, {"--vram", "garbage"}},
      {{"--policy", "nope"}, {"--policy", "nope"}},
      {{"-p", "ok \xff\xfe"}, {"--prompt", "UTF-8", "byte 3"}},
      {{"-p", "\xc0\xaf"}, {"--prompt", "UTF-8", "byte 0"}},  // an overlong '/'
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"run", missing, "-n", "2"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    CAPTURE(c.flags[0]);
    CAPTURE(c.flags[1]);
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == 2);
    CHECK(r.out.empty());  // nothing echoed
    CHECK_MESSAGE(!contains(r.err, "not_loaded.gguf"), r.err);
    for (const std::string& text : c.mentioned)
      CHECK_MESSAGE(contains(r.err, text), "missing '" << text << "': " << r.err);
  }
  // An unwritable trace path is found before loading too (bad input: exit 1), not after the run.
  const Result trace = run_ferry({"run", missing, "--trace", (dir.path() / "no_dir" / "t.json").string()}, dir.path());
  CHECK(trace.status == 1);
  CHECK_MESSAGE(contains(trace.err, "--trace"), trace.err);
  CHECK(!contains(trace.err, "not_loaded.gguf"));
}

TEST_CASE("ferry run: an unknown command is named as one") {
  TempDir dir;
  const Result r = run_ferry({"frobnicate", "x"}, dir.path());
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "unknown command 'frobnicate'"), r.err);
  CHECK(contains(r.err, "run"));  // and the commands there are
}

TEST_CASE("ferry run: a prompt longer than the context, or a context beyond the model's, is refused before output") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result long_prompt =
      run_ferry({"run", model, "--ctx", "4", "-p", "a prompt of many more than four tokens"}, dir.path());
  CHECK(long_prompt.status == 2);
  CHECK(long_prompt.out.empty());
  CHECK_MESSAGE(contains(long_prompt.err, "the context holds 4"), long_prompt.err);
  // The tiny preset was trained on 512 positions.
  const Result beyond = run_ferry({"run", model, "--ctx", "600", "-n", "1"}, dir.path());
  CHECK(beyond.status == 2);
  CHECK(beyond.out.empty());
  CHECK_MESSAGE(contains(beyond.err, "--force-ctx"), beyond.err);
  CHECK(contains(beyond.err, "512"));
  const Result forced = run_ferry({"run", model, "--ctx", "600", "--force-ctx", "-n", "1"}, dir.path());
  CHECK_MESSAGE(forced.status == 0, forced.err);
}

TEST_CASE("ferry run: reaching the end of the context is said, not silent") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result r = run_ferry({"run", model, "--ctx", "12", "-n", "100", "-p", "hi"}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.err, "the context of 12 tokens is full"), r.err);
  const Result plenty = run_ferry({"run", model, "-n", "3", "-p", "hi"}, dir.path());
  CHECK(!contains(plenty.err, "is full"));
}

TEST_CASE("ferry run: standard output that cannot be written fails the run") {
  if (!fs::exists("/dev/full")) {
    MESSAGE("no /dev/full on this machine: not checked");
    return;
  }
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  RunSpec spec;
  spec.stdout_path = "/dev/full";
  const Result r = run_ferry({"run", model, "-n", "3"}, dir.path(), spec);
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "standard output"), r.err);
}

TEST_CASE("ferry run: NaN in a weight is bad model data (exit 1) naming the tensor, not a usage error") {
  TempDir dir;
  const fs::path model = make_tiny_model(dir.path());
  uint64_t offset = 0;
  {
    const ferry::GgufFile file = ferry::GgufFile::open(model);
    offset = file.tensor("blk.1.ffn_norm.weight").file_offset;  // F32
  }
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset + 4 * 7));
    const float nan = std::numeric_limits<float>::quiet_NaN();
    f.write(reinterpret_cast<const char*>(&nan), sizeof nan);
  }
  const Result r = run_ferry({"run", model.string(), "-n", "3", "--policy", "cpu-all"}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "tensor 'blk.1.ffn_norm.weight' holds NaN at element 7"), r.err);
  CHECK(contains(r.err, model.string()));
}

TEST_CASE("ferry run: a context larger than the host can hold is refused with the numbers and the largest that fits") {
  if (kAddressSanitizer) {
    MESSAGE("AddressSanitizer build: address-space limits do not apply (its shadow memory needs terabytes)");
    return;
  }
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  // 16 Mi positions of the tiny model's KV cache are 16 GiB; under a 3 GiB address-space limit they cannot fit, and a
  // check that only looked at the allocation's result would be killed later instead (Linux overcommits).
  RunSpec spec;
  spec.address_space_limit = uint64_t{3} << 30;
  const Result r =
      run_ferry({"run", model, "--ctx", "16777216", "--force-ctx", "-n", "2", "--policy", "cpu-all"}, dir.path(), spec);
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "host memory"), r.err);
  CHECK(contains(r.err, "KV cache"));
  CHECK(contains(r.err, "the largest context that fits is"));
}

TEST_CASE("ferry run under tight memory limits ends with a result or an error, never a crash or an abort") {
  if (kAddressSanitizer) {
    MESSAGE("AddressSanitizer build: address-space limits do not apply (its shadow memory needs terabytes)");
    return;
  }
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  // The smallest address-space limit at which the program starts at all (the CUDA libraries of a CUDA build need a
  // large mapping before main runs; that is the loader's limit, not ferry's), found by bisection in 16 MiB steps.
  auto starts = [&](uint64_t limit) {
    RunSpec spec;
    spec.address_space_limit = limit;
    return run_ferry({"--version"}, dir.path(), spec).status == 0;
  };
  uint64_t lo = uint64_t{16} << 20, hi = uint64_t{8} << 30;
  REQUIRE(starts(hi));
  while (hi - lo > (uint64_t{16} << 20)) {
    const uint64_t mid = lo + (hi - lo) / 2;
    (starts(mid) ? hi : lo) = mid;
  }
  MESSAGE("ferry starts with an address-space limit of " << (hi >> 20) << " MiB");
  int completed = 0;
  for (uint64_t extra = 0; extra <= (uint64_t{512} << 20); extra += uint64_t{32} << 20) {
    RunSpec spec;
    spec.address_space_limit = hi + extra;
    const Result r = run_ferry({"run", model, "-n", "8", "--ctx", "256", "--policy", "cpu-all"}, dir.path(), spec);
    CAPTURE(extra >> 20);
    CHECK_MESSAGE((r.status == 0 || r.status == 1), "status " << r.status << ", signal " << r.signal << ": " << r.err);
    if (r.status == 1) CHECK_MESSAGE((contains(r.err, "memory") || contains(r.err, "resources")), r.err);
    completed += r.status == 0;
  }
  CHECK(completed > 0);  // with enough room it runs
}

TEST_CASE("ferry run prints whole UTF-8 characters, even when sampled byte tokens split them") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  // The synthetic vocabulary holds every <0xHH> byte token: hot sampling picks continuation and lead bytes in any
  // order, which printed piece by piece is ill-formed UTF-8.
  for (const char* seed : {"1", "2", "3", "4", "5", "6"}) {
    CAPTURE(seed);
    const Result r =
        run_ferry({"run", model, "-n", "48", "-p", "Hi", "--temp", "3", "--top-k", "0", "--seed", seed}, dir.path());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(ferry::first_invalid_utf8(r.out) == ferry::kValidUtf8);
  }
}
