// The `ferry` subcommands. Each registers its options on the CLI11 app and returns the action to run when chosen;
// the action returns the process exit status. Errors are thrown as ferry::Error and reported by main().
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace ferry::cli {

using Action = std::function<int()>;

Action add_info_command(CLI::App& app);
Action add_dump_command(CLI::App& app);
Action add_make_model_command(CLI::App& app);
Action add_run_command(CLI::App& app);
Action add_chat_command(CLI::App& app);
Action add_perplexity_command(CLI::App& app);
Action add_tokenize_command(CLI::App& app);
Action add_plan_command(CLI::App& app);
Action add_calibrate_command(CLI::App& app);
Action add_bench_command(CLI::App& app);
Action add_flux_step_command(CLI::App& app);
Action add_serve_command(CLI::App& app);

}  // namespace ferry::cli
