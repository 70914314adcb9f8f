// `ferry perplexity [MODEL] -f TEXT [-c N] [--chunks N] [--batch N] [--vram SIZE] [--policy P] [--logits-out FILE]`:
// the perplexity of a model on a text by llama.cpp's method (perplexity.hpp), under any budget and policy. Standard
// output carries the figures (the running estimate after each chunk, `[1]8.1234,[2]...`, then `PPL = x +/- y`);
// standard error what was measured and how (tokens, chunks, BOS, time, placement).
//
// Every flag is checked, and the text read and checked as UTF-8, before the model is loaded; the text's length against
// the chunk size once it is tokenized, before anything is evaluated.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/text/logits_file.hpp"
#include "ferry/text/perplexity.hpp"
#include "ferry/text/utf8.hpp"
#include "model_command.hpp"
#include "override_flags.hpp"

namespace ferry::cli {
namespace {

struct PerplexityFlags {
  std::string model;
  std::string text_file;
  int64_t n_ctx = 512;
  bool force_ctx = false;
  int64_t chunks = 0;  // 0: all
  int64_t batch = 512;
  std::string vram = "8GiB";
  std::string policy = "resident-stream";
  std::string logits_out;
  OverrideFlags overrides;
};

struct PerplexityRequest {
  uint64_t vram_budget = 0;
  Policy policy = Policy::RESIDENT_STREAM;
  DefaultModelChoice default_model = DefaultModelChoice::SMOLLM2;
  std::string text;
  LlamaRunnerOptions runner;  // the overrides and the plan file, read with the flags
};

// The whole text, read now so an unreadable or ill-formed file costs no model load. IO/FORMAT (exit 1): the file is
// bad input, not a bad flag.
std::string read_text(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) bad_flag("--file", quote_name(path) + " is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCategory::IO, path + ": cannot read the text (--file): " + std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(ErrorCategory::IO, path + ": cannot read the text (--file): " + std::strerror(errno));
  if (const size_t at = first_invalid_utf8(text); at != kValidUtf8)
    fail(ErrorCategory::FORMAT,
         path + ": the text (--file) is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  return text;
}

PerplexityRequest validate(const PerplexityFlags& f) {
  PerplexityRequest r;
  if (f.n_ctx < kPerplexityMinContext)
    bad_flag("--ctx", std::to_string(f.n_ctx) + " is too small: a chunk needs at least " +
                          std::to_string(kPerplexityMinContext) + " tokens (half of it is context)");
  if (f.chunks < 0) bad_flag("--chunks", std::to_string(f.chunks) + " is negative (0: every chunk of the text)");
  if (f.batch < 1) bad_flag("--batch", std::to_string(f.batch) + " is not a positive number of tokens");
  r.vram_budget = vram_flag(f.vram);
  r.policy = policy_flag(f.policy);
  r.runner.vram_budget = r.vram_budget;
  apply_override_flags(f.overrides, r.runner);
  r.vram_budget = r.runner.vram_budget;  // the plan file's, without --vram
  check_output_path("--logits-out", f.logits_out);
  if (f.model.empty()) r.default_model = default_model_choice();
  r.text = read_text(f.text_file);
  return r;
}

int perplexity_command(const PerplexityFlags& f) {
  const PerplexityRequest request = validate(f);
  const LoadedModel model(model_path_or_default(f.model, request.default_model));
  const int64_t n_ctx = choose_context(f.n_ctx, f.force_ctx, model.config, model.path, "--ctx");
  const std::vector<int32_t> tokens = model.tokenizer.encode(request.text, model.add_bos);
  const auto n_tokens = static_cast<int64_t>(tokens.size());
  if (n_tokens < 2 * n_ctx)
    bad_flag("--ctx", "chunks of " + std::to_string(n_ctx) + " tokens need a text of at least " +
                          std::to_string(2 * n_ctx) + " tokens (two chunks); " + f.text_file + " has " +
                          std::to_string(n_tokens) + " (use a longer text or a smaller --ctx)");

  PerplexityOptions po;
  po.n_ctx = n_ctx;
  po.max_chunks = f.chunks;
  po.batch = std::min(f.batch, n_ctx);
  po.bos = model.add_bos ? model.tokenizer.bos() : -1;
  po.explain_non_finite = [&model] { return model.explain_non_finite(); };

  LlamaRunnerOptions ro = request.runner;
  ro.n_ctx = n_ctx;
  ro.max_tokens = po.batch;
  ro.policy = request.policy;
  ro.vram_budget = request.vram_budget;
  ro.all_logits = true;  // the second half of every chunk is scored
  note_when_cpu_only(ro.policy);
  LlamaRunner runner(model.config, model.weights, ro);
  if (!runner.plan_note().empty()) std::fprintf(stderr, "ferry: %s\n", runner.plan_note().c_str());
  std::optional<LogitsWriter> logits_writer;
  if (!f.logits_out.empty()) logits_writer.emplace(f.logits_out, model.config.n_vocab);

  const int64_t n_chunks = perplexity_chunk_count(n_tokens, po);
  const int64_t scored = n_ctx - 1 - n_ctx / 2;
  std::fprintf(stderr,
               "ferry: perplexity of %s on %s: %lld tokens, %lld chunks of %lld (scoring the last %lld of each), "
               "BOS %s\n",
               model.path.c_str(), f.text_file.c_str(), static_cast<long long>(n_tokens),
               static_cast<long long>(n_chunks), static_cast<long long>(n_ctx), static_cast<long long>(scored),
               po.bos >= 0 ? "replacing each chunk's first token" : "not added (the model's metadata)");
  std::fflush(stderr);
  const PerplexityResult result = perplexity(
      runner, tokens, po,
      [](const PerplexityProgress& p) {
        char text[64];
        std::snprintf(text, sizeof text, "[%lld]%.4f,", static_cast<long long>(p.chunk + 1), p.running_ppl);
        write_stdout(text);
      },
      logits_writer ? LogitsRowSink([&](int64_t pos, int32_t token, std::span<const float> row) {
        logits_writer->write_row(pos, token, row);
      })
                    : LogitsRowSink());
  char final_line[96];
  std::snprintf(final_line, sizeof final_line, "\nPPL = %.4f +/- %.5f\n", result.ppl, result.uncertainty);
  write_stdout(final_line);
  if (logits_writer) logits_writer->commit();
  const auto evaluated = static_cast<double>(result.n_chunks * n_ctx);
  std::fprintf(stderr,
               "\nmodel:     %s (%lld layers, width %lld)\n"
               "evaluated: %lld tokens in %.3f s (%.1f tokens/s), %lld scored\n"
               "placement: %s (%s)\n"
               "%s",
               model.path.c_str(), static_cast<long long>(model.config.n_layer),
               static_cast<long long>(model.config.n_embd), static_cast<long long>(evaluated), result.seconds,
               result.seconds > 0 ? evaluated / result.seconds : 0.0, static_cast<long long>(result.n_scored),
               runner.placement_summary().c_str(),
               placement_origin(f.overrides, f.vram, f.policy, ro.vram_budget).c_str(),
               device_memory_line(runner.scheduler().memory()).c_str());
  if (logits_writer)
    std::fprintf(stderr, "logits:    %lld rows of %lld written to %s\n", static_cast<long long>(logits_writer->rows()),
                 static_cast<long long>(model.config.n_vocab), f.logits_out.c_str());
  return 0;
}

}  // namespace

Action add_perplexity_command(CLI::App& app) {
  auto o = std::make_shared<PerplexityFlags>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity of a llama-family model on a text, by llama.cpp's method (default model as `run`)");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model; see FERRY_DEFAULT_MODEL)");
  cmd->add_option("-f,--file", o->text_file, "The text (UTF-8), tokenized whole")->required();
  cmd->add_option("-c,--ctx", o->n_ctx, "Tokens per chunk (default 512; at most the model's training context)");
  cmd->add_flag("--force-ctx", o->force_ctx, "Allow --ctx beyond the model's training context");
  cmd->add_option("--chunks", o->chunks, "Evaluate only the first N chunks (default: all)");
  cmd->add_option("-b,--batch", o->batch, "Tokens per forward step (default 512; the result does not depend on it)");
  CLI::Option* vram =
      cmd->add_option("--vram", o->vram, "VRAM budget: everything ferry holds on the GPU (8GiB, 7.5G, 512MiB)");
  CLI::Option* policy =
      cmd->add_option("--policy", o->policy, "resident-first | resident-stream | stream-all | cpu-all | auto");
  add_override_flags(*cmd, o->overrides, vram, policy);
  cmd->add_option("--logits-out", o->logits_out,
                  "Write the logits of every evaluated position to this file (float32; layout in the README)");
  return [o] { return perplexity_command(*o); };
}

}  // namespace ferry::cli
