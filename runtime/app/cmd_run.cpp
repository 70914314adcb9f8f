// `ferry run [MODEL] [-p TEXT] [-n N] ...`: generates text with a llama model, printing it as it comes, then the
// prompt and generation rates, where the layers ran and the peak device memory. `--logits-out FILE` also writes the
// logits of every evaluated position (logits_file.hpp).
//
// Every flag is checked before anything is loaded (a typo costs no model load), and the prompt's length against the
// context before anything is printed; then the model, then generation.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/logits_file.hpp"
#include "ferry/text/utf8.hpp"
#include "ferry/text/utf8_stream.hpp"
#include "model_command.hpp"

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
  std::string logits_out;
  std::string link_gbps;
};

// The flags after validation, in the types the runtime takes.
struct RunRequest {
  SamplerConfig sampler;
  uint64_t vram_budget = 0;
  Policy policy = Policy::RESIDENT_STREAM;
  DefaultModelChoice default_model = DefaultModelChoice::SMOLLM2;
  double link_gbps = 0;
};

std::string number_text(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", static_cast<double>(v));
  return text;
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

RunRequest validate(const RunFlags& f) {
  RunRequest r;
  if (!std::isfinite(f.temperature) || f.temperature < 0.0f || f.temperature > 100.0f)
    bad_flag("--temp", number_text(f.temperature) + " is outside [0, 100] (0: greedy)");
  if (!(f.top_p > 0.0f && f.top_p <= 1.0f)) bad_flag("--top-p", number_text(f.top_p) + " is outside (0, 1]");
  r.sampler = SamplerConfig{f.temperature, f.top_k, f.top_p, parse_seed(f.seed)};
  r.vram_budget = vram_flag(f.vram);
  r.policy = policy_flag(f.policy);
  r.link_gbps = link_flag(f.link_gbps);
  if (const size_t at = first_invalid_utf8(f.prompt); at != kValidUtf8)
    bad_flag("--prompt", "the text is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  check_output_path("--trace", f.trace);
  check_output_path("--logits-out", f.logits_out);
  if (f.model.empty()) r.default_model = default_model_choice();
  return r;
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
  const LoadedModel model(model_path_or_default(f.model, request.default_model));
  const int64_t n_ctx = choose_context(f.n_ctx, f.force_ctx, model.config, model.path, "--ctx");
  GenerateOptions g;
  g.prompt = f.prompt;
  // BOS as the model's metadata says (SmolLM2's BOS is a chat marker); an empty prompt needs it to start from.
  g.add_bos = model.add_bos || f.prompt.empty();
  g.prompt_tokens = model.tokenizer.encode(f.prompt, g.add_bos);
  if (static_cast<int64_t>(g.prompt_tokens.size()) >= n_ctx)
    bad_flag("--prompt", "the prompt is " + std::to_string(g.prompt_tokens.size()) +
                             " tokens long; the context holds " + std::to_string(n_ctx) +
                             " and one more is needed to generate (use a shorter prompt or a larger --ctx)");
  g.max_new_tokens = f.n_predict;
  g.sampler = request.sampler;
  g.explain_non_finite = [&model] { return model.explain_non_finite(); };

  LlamaRunnerOptions ro;
  ro.n_ctx = n_ctx;
  ro.max_tokens = std::min<int64_t>(512, n_ctx);
  ro.policy = request.policy;
  ro.vram_budget = request.vram_budget;
  ro.prefetch_depth = f.prefetch;
  ro.trace_path = f.trace;
  ro.link_gbps = request.link_gbps;
  ro.all_logits = !f.logits_out.empty();  // the recorder asks for every prompt position's row
  note_when_cpu_only(ro.policy);
  LlamaRunner runner(model.config, model.weights, ro);
  std::optional<LogitsWriter> logits_writer;
  std::optional<LogitsRecorder> recorder;
  if (!f.logits_out.empty()) {
    logits_writer.emplace(f.logits_out, model.config.n_vocab);
    recorder.emplace(runner, *logits_writer);
  }
  CausalLm& backend = recorder ? static_cast<CausalLm&>(*recorder) : runner;

  write_stdout(f.prompt);
  // Pieces may end inside a character (byte tokens of CJK text or emoji): print whole characters only.
  Utf8Stream text;
  const GenerateStats stats =
      generate(backend, model.tokenizer, g, [&text](std::string_view piece) { write_stdout(text.push(piece)); });
  write_stdout(text.flush() + "\n");
  if (logits_writer) logits_writer->commit();
  std::string reason;
  std::fprintf(stderr,
               "\nmodel: %s (%lld layers, width %lld)\n"
               "prompt:     %lld tokens in %.3f s (%.1f tokens/s)\n"
               "generation: %lld tokens in %.3f s (%.1f tokens/s)%s\n"
               "placement:  %s (--vram %s, --policy %s)\n"
               "%s",
               model.path.c_str(), static_cast<long long>(model.config.n_layer),
               static_cast<long long>(model.config.n_embd), static_cast<long long>(stats.prompt_tokens),
               stats.prompt_seconds, stats.prompt_tokens_per_second(), static_cast<long long>(stats.generated_tokens),
               stats.generate_seconds, stats.generate_tokens_per_second(), stop_reason(stats, n_ctx, reason),
               runner.placement_summary().c_str(), f.vram.c_str(), f.policy.c_str(),
               device_memory_line(runner.scheduler().memory()).c_str());
  if (request.link_gbps > 0)
    std::fprintf(stderr, "link:       %s\n", link_note(request.link_gbps, runner.placements()).c_str());
  if (logits_writer)
    std::fprintf(stderr, "logits:     %lld rows of %lld written to %s\n", static_cast<long long>(logits_writer->rows()),
                 static_cast<long long>(model.config.n_vocab), f.logits_out.c_str());
  return 0;
}

}  // namespace

Action add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunFlags>();
  CLI::App* cmd = app.add_subcommand(
      "run", "Generate text with a llama-family model (default: SmolLM2-135M-Instruct, fetched once)");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model; see FERRY_DEFAULT_MODEL)");
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
  cmd->add_option("--link-gbps", o->link_gbps,
                  "Simulate a slower host link: pace streamed layers' host-to-device copies to this many GB/s "
                  "(e.g. 25 or 12, as PCIe 4.0 x16 or x8); reported as simulated");
  cmd->add_option("--trace", o->trace, "Write the copy/compute/CPU spans as Chrome trace JSON to this file");
  cmd->add_option("--logits-out", o->logits_out,
                  "Write the logits of every evaluated position to this file (float32; layout in the README)");
  return [o] { return run(*o); };
}

}  // namespace ferry::cli
