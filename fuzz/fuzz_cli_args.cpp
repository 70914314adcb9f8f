// libFuzzer target for the command line: the input, split on NUL bytes, is an argument vector that the `ferry`
// program's own parser (ferry::cli::CommandLine, every subcommand's options and checks) parses; no action runs. A
// CLI11 parse error (usage, help, version) is the expected outcome for most inputs; a crash, a sanitizer report, a
// hang or any other exception is a finding.
#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cli_app.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"ferry"};
  std::string current;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current += static_cast<char>(data[i]);
    }
  }
  if (size > 0) args.push_back(current);
  // Bounded like a real command line: libFuzzer's -max_len keeps inputs small anyway.
  if (args.size() > 64) args.resize(64);
  try {
    ferry::cli::parse_only(args);
  } catch (const CLI::Error&) {
    // A usage error, --help or --version: what the program turns into exit status 2 (or 0 for help).
  }
  return 0;
}
