#include "cli_app.hpp"

#include <CLI/CLI.hpp>
#include <string>

#include "ferry/error.hpp"

namespace ferry::cli {

CommandLine::CommandLine()
    : m_app(std::make_unique<CLI::App>("ferry: run GGUF-quantized models on GPUs smaller than the model")) {
  m_app->require_subcommand(1);
  m_app->set_version_flag("--version", "ferry 0.1.0");
  auto remember = [&](Action action) { m_commands.emplace_back(m_app->get_subcommands({}).back(), action); };
  remember(add_info_command(*m_app));
  remember(add_dump_command(*m_app));
  remember(add_make_model_command(*m_app));
  remember(add_run_command(*m_app));
  remember(add_chat_command(*m_app));
  remember(add_perplexity_command(*m_app));
  remember(add_tokenize_command(*m_app));
  remember(add_plan_command(*m_app));
  remember(add_calibrate_command(*m_app));
  remember(add_bench_command(*m_app));
  remember(add_flux_step_command(*m_app));
  remember(add_serve_command(*m_app));
}

CommandLine::~CommandLine() = default;

void CommandLine::parse(int argc, const char* const* argv) {
  // CLI11 calls a stray word "not expected"; a user who typed a command name wrong should read that it is unknown.
  if (argc > 1 && argv[1] != nullptr && argv[1][0] != '-') {
    const std::string word = argv[1];
    std::string names;
    bool known = false;
    for (const auto& [sub, action] : m_commands) {
      known = known || sub->check_name(word);
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) throw CLI::ValidationError("unknown command " + quote_name(word) + " (commands: " + names + ")");
  }
  m_app->parse(argc, argv);
}

const Action* CommandLine::chosen() const {
  for (const auto& [sub, action] : m_commands)
    if (sub->parsed()) return &action;
  return nullptr;
}

void parse_only(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  if (args.empty()) argv.push_back("ferry");  // CLI11 reads argv[0] as the program name
  for (const std::string& a : args) argv.push_back(a.c_str());
  CommandLine command_line;
  command_line.parse(static_cast<int>(argv.size()), argv.data());
}

}  // namespace ferry::cli
