// `ferry run [MODEL] [-p TEXT] [-n N] ...`: generates text with a llama model, printing it as it comes, then the
// prompt and generation rates, where the layers ran and the peak device memory.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "ferry/default_model.hpp"
#include "ferry/error.hpp"
#include "ferry/generate.hpp"
#include "ferry/gguf.hpp"
#include "ferry/llama_model.hpp"
#ifdef FERRY_HAVE_CUDA
#include "ferry/offload/device_memory.hpp"
#endif
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/llama_runner.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/tokenizer.hpp"

namespace ferry::cli {
namespace {

struct RunOptions {
  std::string model;
  std::string prompt = "Once upon a time";
  int64_t n_predict = 64;
  int64_t n_ctx = 0;
  float temperature = 0.0f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  std::string vram = "8GiB";
  std::string policy = "resident-stream";
  int prefetch = 1;
  std::string trace;
};

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

int run(const RunOptions& o) {
  std::string path = o.model;
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
  const int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : std::min<int64_t>(config.n_ctx_train, 2048);
  if (n_ctx > config.n_ctx_train)
    std::fprintf(stderr, "ferry: warning: --ctx %lld exceeds the model's training context of %lld\n",
                 static_cast<long long>(n_ctx), static_cast<long long>(config.n_ctx_train));
  LlamaRunnerOptions ro;
  ro.n_ctx = n_ctx;
  ro.max_tokens = std::min<int64_t>(512, n_ctx);
  ro.policy = parse_llama_policy(o.policy);
  ro.vram_budget = parse_budget(o.vram);
  ro.prefetch_depth = o.prefetch;
  ro.trace_path = o.trace;
  const bool gpu = gpu_available();
  if (!gpu && ro.policy != LlamaPolicy::CPU_ALL)
    std::fprintf(stderr, "ferry: no GPU (%s): every layer runs on the CPU\n", gpu_unavailable_reason().c_str());
  LlamaOffloadRunner backend(config, weights, ro);

  GenerateOptions g;
  g.prompt = o.prompt;
  g.max_new_tokens = o.n_predict;
  g.sampler = SamplerConfig{o.temperature, o.top_k, o.top_p, o.seed};
  std::fputs(o.prompt.c_str(), stdout);
  std::fflush(stdout);
  const GenerateStats stats = generate(backend, tokenizer, g, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  std::fputs("\n", stdout);
  std::fprintf(stderr,
               "\nmodel: %s (%lld layers, width %lld)\n"
               "prompt:     %lld tokens in %.3f s (%.1f tokens/s)\n"
               "generation: %lld tokens in %.3f s (%.1f tokens/s)%s\n"
               "placement:  %s (--vram %s, --policy %s)\n"
               "%s",
               path.c_str(), static_cast<long long>(config.n_layer), static_cast<long long>(config.n_embd),
               static_cast<long long>(stats.prompt_tokens), stats.prompt_seconds, stats.prompt_tokens_per_second(),
               static_cast<long long>(stats.generated_tokens), stats.generate_seconds,
               stats.generate_tokens_per_second(), stats.stopped_at_eos ? " (stopped at end of text)" : "",
               backend.placement_summary().c_str(), o.vram.c_str(), o.policy.c_str(),
               device_memory_line(backend.scheduler().memory()).c_str());
  return 0;
}

}  // namespace

Action add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd =
      app.add_subcommand("run", "Generate text with a llama-family model (default: a built-in small model)");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model)");
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--ctx", o->n_ctx, "Context length (default: the model's, at most 2048)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", o->temperature, "Sampling temperature (0: greedy)")->check(CLI::Range(0.0f, 100.0f));
  cmd->add_option("--top-k", o->top_k, "Top-k cut (0: none)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", o->top_p, "Nucleus cut in (0, 1]")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", o->seed, "Sampling seed");
  cmd->add_option("--vram", o->vram, "VRAM budget: everything ferry holds on the GPU (8GiB, 7.5G, 512MiB)");
  cmd->add_option("--policy", o->policy, "resident-first | resident-stream | stream-all | cpu-all");
  cmd->add_option("--prefetch", o->prefetch, "Streamed layers copied ahead of compute (1-4)")->check(CLI::Range(1, 4));
  cmd->add_option("--trace", o->trace, "Write the copy/compute/CPU spans as Chrome trace JSON to this file");
  return [o] { return run(*o); };
}

}  // namespace ferry::cli
