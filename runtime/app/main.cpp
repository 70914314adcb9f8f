// ferry: the command-line program. Parses the subcommand, runs it, and turns every ferry::Error into one line on
// stderr ("ferry: format error: FILE: ...") and a non-zero exit status.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <string_view>
#include <system_error>

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

// Out of memory where an exception cannot travel (a library's worker thread, a noexcept function) ends in
// std::terminate; the user must still read what happened and get ferry's exit status, not SIGABRT.
[[noreturn]] void on_terminate() noexcept {
  static std::atomic_flag reporting = ATOMIC_FLAG_INIT;
  if (reporting.test_and_set())  // another thread is already reporting; it ends the process
    for (;;) ::pause();
  int status = 3;
  std::string message = "internal error: terminated";
  if (const std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::bad_alloc&) {
      status = 1;
      message = "out of memory: a host allocation failed (see `ulimit -v` and free memory)";
    } catch (const std::exception& e) {
      status = out_of_resources(e) ? 1 : 3;
      message = std::string(status == 1 ? "out of resources: " : "internal error: ") + e.what();
    } catch (...) {
    }
  }
  std::fprintf(stderr, "ferry: %s\n", message.c_str());
  std::fflush(stderr);
  ::_exit(status);
}

}  // namespace

int main(int argc, char** argv) {
#ifdef FERRY_USE_MIMALLOC
  (void)mi_version();  // keeps libmimalloc linked: it replaces malloc (operator new: mimalloc_new.cpp)
#endif
  std::set_terminate(on_terminate);
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
    std::fprintf(stderr,
                 "ferry: out of memory: a host allocation failed (see `ulimit -v` and free memory; a smaller "
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
