// The `ferry` command line as a CLI11 app with every subcommand registered. Parsing is separate from running, so the
// program (main.cpp) and the argument fuzzer (fuzz/fuzz_cli_args.cpp) parse through the same code.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"

namespace ferry::cli {

class CommandLine {
 public:
  CommandLine();  // builds the app: every subcommand and --version
  ~CommandLine();
  CommandLine(const CommandLine&) = delete;
  CommandLine& operator=(const CommandLine&) = delete;

  // Parses without running anything. Throws CLI::ParseError as CLI11 does (--help and --version included); app()
  // turns one into the message and CLI11's exit status.
  void parse(int argc, const char* const* argv);
  // The action of the subcommand chosen by a successful parse; null before one.
  const Action* chosen() const;
  CLI::App& app() noexcept { return *m_app; }

 private:
  std::unique_ptr<CLI::App> m_app;
  std::vector<std::pair<CLI::App*, Action>> m_commands;
};

// Builds a CommandLine and parses `args` (args[0] is the program name); runs no action. Throws CLI::ParseError.
void parse_only(const std::vector<std::string>& args);

}  // namespace ferry::cli
