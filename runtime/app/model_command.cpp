#include "model_command.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "ferry/error.hpp"
#include "ferry/models/weight_scan.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/link_pacing.hpp"
#include "ferry/offload/size_parse.hpp"
#ifdef FERRY_HAVE_CUDA
#include "ferry/offload/device_memory.hpp"
#endif

namespace ferry::cli {

void bad_flag(const std::string& flag, const std::string& why) {
  fail(ErrorCategory::INVALID_ARGUMENT, flag + ": " + why);
}

uint64_t vram_flag(const std::string& text) {
  try {
    return parse_budget(text);
  } catch (const Error& e) {
    bad_flag("--vram", e.what());
  }
}

Policy policy_flag(const std::string& text) {
  try {
    return parse_policy(text);
  } catch (const Error& e) {
    bad_flag("--policy", e.what());
  }
}

double link_flag(const std::string& text) {
  if (text.empty()) return 0;
  // Plain decimals only ("25", "12.5"): strtod would also take hex, exponents and "inf".
  const bool plain = text.find_first_not_of("0123456789.") == std::string::npos &&
                     std::count(text.begin(), text.end(), '.') <= 1 && text != ".";
  const double gbps = plain ? std::strtod(text.c_str(), nullptr) : -1;
  if (!plain) bad_flag("--link-gbps", quote_name(text) + " is not a plain decimal rate in GB/s (e.g. 25 or 12.5)");
  if (const std::string problem = link_rate_problem(gbps); !problem.empty()) bad_flag("--link-gbps", problem);
  return gbps;
}

std::string link_rate_text(double gbps) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", gbps);
  return text;
}

std::string link_note(double gbps, const std::vector<Placement>& placements) {
  if (gbps <= 0) return {};
  if (!gpu_available()) return "no effect: no host-to-device copies without a GPU (" + gpu_unavailable_reason() + ")";
  const auto streamed = std::count(placements.begin(), placements.end(), Placement::STREAMED);
  const auto phased = std::count(placements.begin(), placements.end(), Placement::PHASED);  // copied in prompt steps
  if (streamed + phased == 0) return "no effect: no layer is streamed, so no weights are copied per step";
  if (phased > 0)
    return std::to_string(streamed) + " streamed and " + std::to_string(phased) +
           " phased layers' copies (the phased ones in prompt steps) paced to " + link_rate_text(gbps) +
           " GB/s (simulated link)";
  return std::to_string(streamed) + " streamed layers' copies paced to " + link_rate_text(gbps) +
         " GB/s (simulated link)";
}

void check_output_path(const std::string& flag, const std::string& path) {
  if (path.empty()) return;
  const std::filesystem::path p(path);
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) bad_flag(flag, quote_name(path) + " is a directory");
  if (std::filesystem::exists(p, ec)) {
    if (::access(p.c_str(), W_OK) != 0)
      fail(ErrorCategory::IO, path + ": cannot write (" + flag + "): " + std::strerror(errno));
    return;
  }
  const std::filesystem::path dir = p.parent_path().empty() ? std::filesystem::path(".") : p.parent_path();
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    fail(ErrorCategory::IO,
         path + ": cannot create (" + flag + "): folder " + dir.string() + ": " + std::strerror(errno));
}

std::string model_path_or_default(const std::string& model, DefaultModelChoice default_choice) {
  if (!model.empty()) return model;
  return ensure_default_model(default_choice,
                              [](const std::string& line) {
                                std::fprintf(stderr, "ferry: %s\n", line.c_str());
                                std::fflush(stderr);  // pip's output comes between these lines, through the same stderr
                              })
      .string();
}

LoadedModel::LoadedModel(const std::string& model_path)
    : path(model_path),
      file(GgufFile::open(model_path)),
      config(LlamaConfig::from_gguf(file)),
      weights(LlamaWeights::from_gguf(file, config)),
      tokenizer(Tokenizer::from_gguf(file)),
      add_bos(tokenizer.add_bos_default()) {
  // Every id the tokenizer makes must index the embedding, and every id sampled from the logits must have a piece.
  if (tokenizer.vocab_size() != static_cast<size_t>(config.n_vocab))
    fail(ErrorCategory::FORMAT, file.name() + ": the vocabulary (tokenizer.ggml.tokens) has " +
                                    std::to_string(tokenizer.vocab_size()) + " tokens but the model's embedding has " +
                                    std::to_string(config.n_vocab) + " rows");
}

std::string LoadedModel::explain_non_finite() const {
  const auto culprit = find_non_finite_weight(file);
  return file.name() + (culprit ? ": " + *culprit : ": every weight is finite");
}

int64_t choose_context(int64_t requested, bool force, const LlamaConfig& config, const std::string& model,
                       const std::string& flag) {
  if (requested == 0) return std::min<int64_t>(config.n_ctx_train, 2048);
  if (requested > config.n_ctx_train && !force)
    bad_flag(flag, std::to_string(requested) + " exceeds the training context of " + model + " (" +
                       std::to_string(config.n_ctx_train) + " tokens); add --force-ctx to use it anyway");
  return requested;
}

void note_when_cpu_only(Policy policy) {
  if (!gpu_available() && policy != Policy::CPU_ALL)
    std::fprintf(stderr, "ferry: no GPU (%s): every layer runs on the CPU\n", gpu_unavailable_reason().c_str());
}

// The process's share is free memory before the CUDA context minus free memory now; the arena is reserved once, so
// now is the peak.
std::string device_memory_line(const MemoryReport& m) {
  if (!m.uses_device) return "device memory: none (every layer on the CPU)\n";
  std::string line =
      "device memory: arena " + format_size(m.arena_bytes) + " reserved, high-water " + format_size(m.arena_high_water);
#ifdef FERRY_HAVE_CUDA
  const DeviceMemoryBaseline& b = device_memory_baseline();
  const uint64_t free_now = device_free_bytes();
  const uint64_t before = b.free_before_context > 0 ? b.free_before_context : b.free_after_context + b.context_bytes;
  if (before > free_now) line += "; process " + format_size(before - free_now) + " (" + b.method + ")";
#endif
  return line + "\n";
}

void write_stdout(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
    fail(ErrorCategory::IO, std::string("standard output: cannot write: ") + std::strerror(errno));
}

}  // namespace ferry::cli
