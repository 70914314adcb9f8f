// ferry: the command-line program. Parses the subcommand, runs it, and turns every ferry::Error into one line on
// stderr ("ferry: format error: FILE: ...") and a non-zero exit status.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <new>
#include <string_view>
#include <system_error>
#include <filesystem>
#include <string>

#include "cli_app.hpp"
#include "ferry/error.hpp"

#ifdef FERRY_USE_MIMALLOC
#include <mimalloc.h>
#endif

namespace {

// Exit statuses: 1 for bad input or a refused request, 2 for usage errors (CLI11's convention), 3 for internal errors.
int exit_status_for(ferry::ErrorCategory category) {
  switch (category) {
    case ferry::ErrorCategory::INTERNAL:
    case ferry::ErrorCategory::CUDA:
      return 3;
    case ferry::ErrorCategory::INVALID_ARGUMENT:
      return 2;
    default:
      return 1;
  }
}

// True for the errors of a process that ran out of threads or memory (pthread_create, std::thread, oneTBB's workers):
// the machine's limits, not a bug in ferry.
bool out_of_resources(const std::exception& e) {
  if (const auto* s = dynamic_cast<const std::system_error*>(&e))
    return s->code() == std::errc::resource_unavailable_try_again || s->code() == std::errc::not_enough_memory;
  // oneTBB reports a failed thread start as a runtime_error carrying pthread_create's message.
  const std::string_view what = e.what();
  return what.find("pthread_create") != std::string_view::npos ||
         what.find("Resource temporarily unavailable") != std::string_view::npos;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef FERRY_USE_MIMALLOC
  (void)mi_version();  // keeps libmimalloc linked: it replaces malloc (operator new: mimalloc_new.cpp)
#endif
  ferry::cli::CommandLine command_line;
  try {
    command_line.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = command_line.app().exit(e);  // prints help, the version, or the usage error
    return status == 0 ? 0 : 2;
  }
  try {
    const ferry::cli::Action* action = command_line.chosen();
    return action ? (*action)() : 2;
  } catch (const ferry::Error& e) {
    std::fprintf(stderr, "ferry: %s: %s\n", std::string(ferry::category_name(e.category())).c_str(), e.what());
    return exit_status_for(e.category());
  } catch (const std::filesystem::filesystem_error& e) {  // e.g. a cache or output folder that cannot be made
    std::fprintf(stderr, "ferry: %s: %s\n", std::string(ferry::category_name(ferry::ErrorCategory::IO)).c_str(),
                 e.what());
    return exit_status_for(ferry::ErrorCategory::IO);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ferry: out of memory: a host allocation failed (see `ulimit -v` and free memory; a smaller "
                         "--ctx or --vram plan needs less)\n");
    return 1;
  } catch (const std::exception& e) {
    if (out_of_resources(e)) {
      std::fprintf(stderr, "ferry: out of resources: %s\n", e.what());
      return 1;
    }
    std::fprintf(stderr, "ferry: internal error: %s\n", e.what());
    return 3;
  }
}
