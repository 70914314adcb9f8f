// `ferry make-model --preset NAME [--arch ARCH] --type TYPE -o FILE [--seed N]`: writes a synthetic model with a real
// model's exact shapes (see ferry/model_maker.hpp). A progress bar goes to stderr when it is a terminal; the summary
// line goes to stdout.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/models/model_presets.hpp"

namespace ferry::cli {
namespace {

struct MakeModelCliOptions {
  std::string arch;  // empty: the preset's
  std::string preset;
  std::string type = "q4_0";
  std::string output;
  uint64_t seed = 0;
  std::string name;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// One line redrawn in place: bar, tensors, gigabytes and the write rate. Redraws at most every 100 ms (a 7B model
// has ~290 tensors; small ones finish in microseconds and would otherwise flood a slow terminal) and always at the end.
class ProgressBar {
 public:
  explicit ProgressBar(Clock::time_point start) : m_start(start) {}
  ~ProgressBar() {
    if (m_drawn) std::fputc('\n', stderr);
  }
  void update(size_t tensors_done, size_t tensors_total, uint64_t bytes_done, uint64_t bytes_total) {
    const auto now = Clock::now();
    const bool last = tensors_done == tensors_total;
    if (m_drawn && !last && now - m_last_draw < std::chrono::milliseconds(100)) return;
    m_last_draw = now;
    m_drawn = true;
    constexpr int kWidth = 30;
    const double fraction = bytes_total ? static_cast<double>(bytes_done) / static_cast<double>(bytes_total) : 1.0;
    const int filled = static_cast<int>(fraction * kWidth);
    std::string bar(static_cast<size_t>(filled), '=');
    if (filled < kWidth) bar += '>' + std::string(static_cast<size_t>(kWidth - filled - 1), ' ');
    const double elapsed = seconds_since(m_start);
    const double rate = elapsed > 0.0 ? static_cast<double>(bytes_done) / 1e9 / elapsed : 0.0;
    std::fprintf(stderr, "\r[%s] %zu/%zu tensors  %.2f/%.2f GB  %.2f GB/s ", bar.c_str(), tensors_done, tensors_total,
                 static_cast<double>(bytes_done) / 1e9, static_cast<double>(bytes_total) / 1e9, rate);
    std::fflush(stderr);
  }

 private:
  Clock::time_point m_start;
  Clock::time_point m_last_draw{};
  bool m_drawn = false;
};

ModelFileType file_type_of(const MakeModelCliOptions& o) {
  const auto type = parse_model_file_type(o.type);
  if (!type)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "make-model: unknown --type '" + o.type + "' (types: " + model_file_type_names() + ")");
  return *type;
}

// Writes through `write` with the progress bar and prints the summary line.
using WriteFn = std::function<void(const MakeModelOptions&, const GgufWriter::Progress&)>;
int write_and_report(const MakeModelCliOptions& o, ModelFileType type, std::string_view arch, const WriteFn& write) {
  MakeModelOptions options;
  options.type = type;
  options.seed = o.seed;
  options.name = o.name;
  const auto start = Clock::now();
  std::unique_ptr<ProgressBar> bar;
  if (isatty(fileno(stderr))) bar = std::make_unique<ProgressBar>(start);
  size_t n_tensors = 0;
  uint64_t n_bytes = 0;
  write(options, [&](size_t done, size_t total, uint64_t bytes, uint64_t total_bytes) {
    n_tensors = total;
    n_bytes = total_bytes;
    if (bar) bar->update(done, total, bytes, total_bytes);
  });
  bar.reset();  // ends the progress line before the summary
  const double elapsed = seconds_since(start);
  std::printf("wrote %s: %.*s %s %.*s seed %llu, %zu tensors, %.3f GB of tensor data in %.1f s (%.2f GB/s)\n",
              o.output.c_str(), static_cast<int>(arch.size()), arch.data(), o.preset.c_str(),
              static_cast<int>(model_file_type_name(type).size()), model_file_type_name(type).data(),
              static_cast<unsigned long long>(o.seed), n_tensors, static_cast<double>(n_bytes) / 1e9, elapsed,
              elapsed > 0.0 ? static_cast<double>(n_bytes) / 1e9 / elapsed : 0.0);
  return 0;
}

int run_make_flux(const MakeModelCliOptions& o) {
  const FluxPreset* preset = find_flux_preset(o.preset);
  if (preset == nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "make-model: '" + o.preset + "' is not a flux preset (flux presets: " + flux_preset_names() + ")");
  const ModelFileType type = file_type_of(o);
  return write_and_report(o, type, "flux", [&](const MakeModelOptions& options, const GgufWriter::Progress& progress) {
    write_flux_model(preset->config, preset->name, options, o.output, progress);
  });
}

int run_make_model(const MakeModelCliOptions& o) {
  if (o.arch == "flux" || (o.arch.empty() && find_flux_preset(o.preset) != nullptr)) return run_make_flux(o);
  if (find_flux_preset(o.preset) != nullptr)
    fail(ErrorCategory::INVALID_ARGUMENT, "make-model: preset '" + o.preset + "' is a flux model, not " + o.arch);
  // --arch and --preset are flags: a wrong value is a usage error (exit 2), as a wrong --type is.
  LlamaShape shape = [&]() -> const LlamaShape& {
    try {
      return llama_preset(o.preset);
    } catch (const Error& e) {  // NOT_FOUND, with the list of presets
      fail(ErrorCategory::INVALID_ARGUMENT,
           std::string("make-model: ") + e.what() + " (flux presets: " + flux_preset_names() + ")");
    }
  }();
  if (!o.arch.empty()) {
    const std::optional<LlamaArch> arch = parse_llama_arch(o.arch);
    if (!arch)
      fail(ErrorCategory::INVALID_ARGUMENT,
           "make-model: architecture '" + o.arch + "' is not supported (supported: " + llama_arch_names() + ", flux)");
    // llama and mistral name the same block: a llama preset may be written under either name. Other architectures
    // have tensors of their own, so their presets are theirs.
    auto llama_like = [](LlamaArch a) { return a == LlamaArch::LLAMA || a == LlamaArch::MISTRAL; };
    if (*arch != shape.arch && !(llama_like(*arch) && llama_like(shape.arch)))
      fail(ErrorCategory::INVALID_ARGUMENT, "make-model: preset '" + std::string(shape.name) + "' is a " +
                                                std::string(llama_arch_name(shape.arch)) + " model, not " + o.arch);
    shape.arch = *arch;
  }
  const ModelFileType type = file_type_of(o);
  return write_and_report(o, type, llama_arch_name(shape.arch),
                          [&](const MakeModelOptions& options, const GgufWriter::Progress& progress) {
                            write_llama_model(shape, options, o.output, progress);
                          });
}

}  // namespace

Action add_make_model_command(CLI::App& app) {
  auto options = std::make_shared<MakeModelCliOptions>();
  CLI::App* sub = app.add_subcommand("make-model", "Write a synthetic model with a real model's exact shapes");
  sub->add_option("--arch", options->arch, "Architecture (" + llama_arch_names() + ", flux; default: the preset's)");
  sub->add_option("--preset", options->preset, "Shape preset: " + llama_preset_names() + ", " + flux_preset_names())
      ->required();
  sub->add_option("--type", options->type, "Tensor type: " + model_file_type_names())->capture_default_str();
  sub->add_option("-o,--output", options->output, "Output GGUF file (written atomically)")->required();
  sub->add_option("--seed", options->seed, "Seed: the same seed gives a byte-identical file")->capture_default_str();
  sub->add_option("--name", options->name, "general.name (default: \"synthetic PRESET\")");
  return [options] { return run_make_model(*options); };
}

}  // namespace ferry::cli
