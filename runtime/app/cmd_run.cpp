// `ferry run [MODEL] [-p TEXT] [-n N] ...`: generates text with a llama model, printing it as it comes, then the
// prompt and generation rates, where the layers ran and the peak device memory.
//
// Every flag is checked before anything is loaded (a typo costs no model load), and the prompt's length against the
// context before anything is printed; then the model, then generation.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/default_model.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/weight_scan.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/utf8.hpp"
#ifdef FERRY_HAVE_CUDA
#include "ferry/offload/device_memory.hpp"
#endif
#include "ferry/models/llama/runner.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/text/tokenizer.hpp"

namespace ferry::cli {
namespace {

// The flags as given on the command line; numbers that CLI11 would convert loosely (seeds, NaN) stay text until
// validate() reads them strictly.
struct RunFlags {
  std::string model;
  std::string prompt = "Once upon a time";
  int64_t n_predict = 64;
  int64_t n_ctx = 0;
  bool force_ctx = false;
  float temperature = 0.0f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  std::string seed = "0";
  std::string vram = "8GiB";
  std::string policy = "resident-stream";
  int prefetch = 1;
  std::string trace;
};

// The flags after validation, in the types the runtime takes.
struct RunRequest {
  SamplerConfig sampler;
  uint64_t vram_budget = 0;
  Policy policy = Policy::RESIDENT_STREAM;
};

std::string number_text(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", static_cast<double>(v));
  return text;
}

[[noreturn]] void bad_flag(const std::string& flag, const std::string& why) {
  fail(ErrorCategory::INVALID_ARGUMENT, flag + ": " + why);
}

// A seed is a whole number in [0, 2^64): "-1" or "2^64" must not wrap or clamp to another seed silently.
uint64_t parse_seed(const std::string& text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    bad_flag("--seed", quote_name(text) + " is not a whole number from 0 to 18446744073709551615");
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) bad_flag("--seed", quote_name(text) + " is larger than 18446744073709551615 (2^64 - 1)");
  return v;
}

// The trace is written at the end of the run: a path that cannot be written is found out now, not after generating.
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

RunRequest validate(const RunFlags& f) {
  RunRequest r;
  if (!std::isfinite(f.temperature) || f.temperature < 0.0f || f.temperature > 100.0f)
    bad_flag("--temp", number_text(f.temperature) + " is outside [0, 100] (0: greedy)");
  if (!(f.top_p > 0.0f && f.top_p <= 1.0f)) bad_flag("--top-p", number_text(f.top_p) + " is outside (0, 1]");
  r.sampler = SamplerConfig{f.temperature, f.top_k, f.top_p, parse_seed(f.seed)};
  try {
    r.vram_budget = parse_budget(f.vram);
  } catch (const Error& e) {
    bad_flag("--vram", e.what());
  }
  try {
    r.policy = parse_policy(f.policy);
  } catch (const Error& e) {
    bad_flag("--policy", e.what());
  }
  if (const size_t at = first_invalid_utf8(f.prompt); at != kValidUtf8)
    bad_flag("--prompt", "the text is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  check_output_path("--trace", f.trace);
  return r;
}

// Standard output is the product of `run`: a failed write (a full disk, a closed pipe reader) must fail the run.
void write_stdout(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
    fail(ErrorCategory::IO, std::string("standard output: cannot write the generated text: ") + std::strerror(errno));
}

// The context: the model's training context (at most 2048 by default); beyond the training context only with
// --force-ctx, since positions the model never saw give garbage and the KV cache grows with it.
int64_t choose_context(const RunFlags& f, const LlamaConfig& config, const std::string& model) {
  if (f.n_ctx == 0) return std::min<int64_t>(config.n_ctx_train, 2048);
  if (f.n_ctx > config.n_ctx_train && !f.force_ctx)
    bad_flag("--ctx", std::to_string(f.n_ctx) + " exceeds the training context of " + model + " (" +
                          std::to_string(config.n_ctx_train) + " tokens); add --force-ctx to use it anyway");
  return f.n_ctx;
}

// Device memory as design.md counts it: what the process holds (free memory before the CUDA context minus free memory
// now; the arena is reserved once, so now is the peak) and the arena's own high-water mark.
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

const char* stop_reason(const GenerateStats& stats, int64_t n_ctx, std::string& storage) {
  if (stats.stopped_at_eos) return " (stopped at end of text)";
  if (stats.stopped_at_context) {
    storage = " (stopped: the context of " + std::to_string(n_ctx) + " tokens is full; --ctx sets it)";
    return storage.c_str();
  }
  return "";
}

int run(const RunFlags& f) {
  const RunRequest request = validate(f);
  std::string path = f.model;
  if (path.empty())
    path = ensure_default_model([](const std::filesystem::path& p) {
             std::fprintf(stderr, "ferry: generating the built-in default model at %s (once)\n", p.c_str());
           }).string();
  const GgufFile file = GgufFile::open(path);
  const LlamaConfig config = LlamaConfig::from_gguf(file);
  const LlamaWeights weights = LlamaWeights::from_gguf(file, config);
  const Tokenizer tokenizer = Tokenizer::from_gguf(file);
  // Every id the tokenizer makes must index the embedding, and every id sampled from the logits must have a piece.
  if (tokenizer.vocab_size() != static_cast<size_t>(config.n_vocab))
    fail(ErrorCategory::FORMAT, file.name() + ": the vocabulary (tokenizer.ggml.tokens) has " +
                                    std::to_string(tokenizer.vocab_size()) + " tokens but the model's embedding has " +
                                    std::to_string(config.n_vocab) + " rows");
  const int64_t n_ctx = choose_context(f, config, path);
  GenerateOptions g;
  g.prompt = f.prompt;
  g.prompt_tokens = tokenizer.encode(f.prompt, g.add_bos);
  if (static_cast<int64_t>(g.prompt_tokens.size()) >= n_ctx)
    bad_flag("--prompt", "the prompt is " + std::to_string(g.prompt_tokens.size()) +
                             " tokens long; the context holds " + std::to_string(n_ctx) +
                             " and one more is needed to generate (use a shorter prompt or a larger --ctx)");
  g.max_new_tokens = f.n_predict;
  g.sampler = request.sampler;
  g.explain_non_finite = [&file] {
    const auto culprit = find_non_finite_weight(file);
    return file.name() + (culprit ? ": " + *culprit : ": every weight is finite");
  };

  LlamaRunnerOptions ro;
  ro.n_ctx = n_ctx;
  ro.max_tokens = std::min<int64_t>(512, n_ctx);
  ro.policy = request.policy;
  ro.vram_budget = request.vram_budget;
  ro.prefetch_depth = f.prefetch;
  ro.trace_path = f.trace;
  if (!gpu_available() && ro.policy != Policy::CPU_ALL)
    std::fprintf(stderr, "ferry: no GPU (%s): every layer runs on the CPU\n", gpu_unavailable_reason().c_str());
  LlamaRunner backend(config, weights, ro);

  write_stdout(f.prompt);
  const GenerateStats stats = generate(backend, tokenizer, g, write_stdout);
  write_stdout("\n");
  std::string reason;
  std::fprintf(stderr,
               "\nmodel: %s (%lld layers, width %lld)\n"
               "prompt:     %lld tokens in %.3f s (%.1f tokens/s)\n"
               "generation: %lld tokens in %.3f s (%.1f tokens/s)%s\n"
               "placement:  %s (--vram %s, --policy %s)\n"
               "%s",
               path.c_str(), static_cast<long long>(config.n_layer), static_cast<long long>(config.n_embd),
               static_cast<long long>(stats.prompt_tokens), stats.prompt_seconds, stats.prompt_tokens_per_second(),
               static_cast<long long>(stats.generated_tokens), stats.generate_seconds,
               stats.generate_tokens_per_second(), stop_reason(stats, n_ctx, reason),
               backend.placement_summary().c_str(), f.vram.c_str(), f.policy.c_str(),
               device_memory_line(backend.scheduler().memory()).c_str());
  return 0;
}

}  // namespace

Action add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunFlags>();
  CLI::App* cmd =
      app.add_subcommand("run", "Generate text with a llama-family model (default: a built-in small model)");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model)");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text (UTF-8)");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option(
         "--ctx", o->n_ctx,
         "Context length (default: the model's training context, at most 2048; beyond it only with --force-ctx)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_flag("--force-ctx", o->force_ctx, "Allow --ctx beyond the model's training context");
  cmd->add_option("--temp", o->temperature, "Sampling temperature in [0, 100] (0: greedy)");
  cmd->add_option("--top-k", o->top_k, "Top-k cut (0: none)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->top_p, "Nucleus cut in (0, 1]");
  cmd->add_option("--seed", o->seed, "Sampling seed, 0 to 2^64 - 1");
  cmd->add_option("--vram", o->vram, "VRAM budget: everything ferry holds on the GPU (8GiB, 7.5G, 512MiB)");
  cmd->add_option("--policy", o->policy, "resident-first | resident-stream | stream-all | cpu-all");
  cmd->add_option("--prefetch", o->prefetch, "Streamed layers copied ahead of compute (1-4)")->check(CLI::Range(1, 4));
  cmd->add_option("--trace", o->trace, "Write the copy/compute/CPU spans as Chrome trace JSON to this file");
  return [o] { return run(*o); };
}

}  // namespace ferry::cli
