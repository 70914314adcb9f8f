// `ferry run [MODEL] [-p TEXT] [-n N] ...`: generates text with a llama model, printing it as it comes, then the
// prompt and generation rates, where the layers ran and the peak device memory. `--logits-out FILE` also writes the
// logits of every evaluated position (logits_file.hpp). `--chat` answers the prompt as one user turn in the model's
// chat format (chat.hpp) instead of continuing it; `ferry chat` holds a whole conversation.
//
// Every flag is checked before anything is loaded (a typo costs no model load), and the prompt's length against the
// context before anything is printed; then the model, then generation.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/text/chat.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/logits_file.hpp"
#include "ferry/text/utf8.hpp"
#include "ferry/text/utf8_stream.hpp"
#include "generation_flags.hpp"
#include "model_command.hpp"

namespace ferry::cli {
namespace {

struct RunFlags {
  std::string model;
  std::string prompt = "Once upon a time";
  int64_t n_predict = 64;
  ContextFlags context;
  SamplingFlags sampling;
  PlacementFlags placement;
  std::string logits_out;
  bool chat = false;
  ChatFlags chat_flags;
};

// The flags after validation, in the types the runtime takes.
struct RunRequest {
  SamplerConfig sampler;
  LlamaRunnerOptions runner;  // without the context length, known once the model is read
  std::optional<ChatFormatId> chat_format;
  DefaultModelChoice default_model = DefaultModelChoice::SMOLLM2;
};

RunRequest validate(const RunFlags& f) {
  RunRequest r;
  r.sampler = sampler_config(f.sampling);
  r.runner = runner_options(f.placement);
  if (const size_t at = first_invalid_utf8(f.prompt); at != kValidUtf8)
    bad_flag("--prompt", "the text is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  check_output_path("--logits-out", f.logits_out);
  r.chat_format = chat_format_flag(f.chat_flags);
  if (!f.chat && !f.chat_flags.system.empty()) bad_flag("--system", "applies to a chat turn only (add --chat)");
  if (!f.chat && r.chat_format) bad_flag("--chat-format", "applies to a chat turn only (add --chat)");
  if (f.model.empty()) r.default_model = default_model_choice();
  return r;
}

const char* stop_reason(const GenerateStats& stats, int64_t n_ctx, std::string& storage) {
  if (stats.stopped_at_eos) return " (stopped at end of text)";
  if (stats.stopped_at_stop_token) return " (stopped at end of turn)";
  if (stats.stopped_at_context) {
    storage = " (stopped: the context of " + std::to_string(n_ctx) + " tokens is full; --ctx sets it)";
    return storage.c_str();
  }
  return "";
}

int run(const RunFlags& f) {
  const RunRequest request = validate(f);
  const LoadedModel model(model_path_or_default(f.model, request.default_model));
  const int64_t n_ctx = context_length(f.context, model);
  GenerateOptions g;
  // --chat: the prompt as a user turn in the model's chat format, answered until the end of the turn.
  std::optional<ModelChatFormat> chat_format;
  std::vector<ChatMessage> messages;
  if (f.chat) {
    chat_format = model_chat_format(model, request.chat_format);
    if (!f.chat_flags.system.empty()) messages.push_back({"system", f.chat_flags.system});
    messages.push_back({"user", f.prompt});
    g.prompt_tokens = chat_tokens(*chat_format, model.tokenizer, messages, true);
    g.stop_tokens = chat_format->end_of_turn;
  } else {
    g.prompt = f.prompt;  // (with --chat it stays empty: the answer's first piece loses its leading space)
    // BOS as the model's metadata says (SmolLM2's BOS is a chat marker); an empty prompt needs it to start from.
    g.add_bos = model.add_bos || f.prompt.empty();
    g.prompt_tokens = model.tokenizer.encode(f.prompt, g.add_bos);
  }
  if (static_cast<int64_t>(g.prompt_tokens.size()) >= n_ctx)
    bad_flag("--prompt", "the prompt is " + std::to_string(g.prompt_tokens.size()) + " tokens long" +
                             (f.chat ? " in the chat format" : "") + "; the context holds " + std::to_string(n_ctx) +
                             " and one more is needed to generate (use a shorter prompt or a larger --ctx)");
  g.max_new_tokens = f.n_predict;
  g.sampler = request.sampler;
  g.explain_non_finite = [&model] { return model.explain_non_finite(); };

  LlamaRunnerOptions ro = request.runner;
  ro.n_ctx = n_ctx;
  ro.max_tokens = std::min<int64_t>(512, n_ctx);
  ro.all_logits = !f.logits_out.empty();  // the recorder asks for every prompt position's row
  ro.planned_prompt_tokens = static_cast<int64_t>(g.prompt_tokens.size());  // what `auto` optimises for
  ro.planned_generated_tokens = f.n_predict;
  note_when_cpu_only(ro.policy);
  LlamaRunner runner(model.config, model.weights, ro);
  if (!runner.plan_note().empty()) std::fprintf(stderr, "ferry: %s\n", runner.plan_note().c_str());
  std::optional<LogitsWriter> logits_writer;
  std::optional<LogitsRecorder> recorder;
  if (!f.logits_out.empty()) {
    logits_writer.emplace(f.logits_out, model.config.n_vocab);
    recorder.emplace(runner, *logits_writer);
  }
  CausalLm& backend = recorder ? static_cast<CausalLm&>(*recorder) : runner;

  if (chat_format)
    std::fprintf(stderr, "ferry: chat format %s (%s)\n", std::string(chat_format->format.name()).c_str(),
                 chat_format->origin.c_str());
  if (!f.chat) write_stdout(f.prompt);
  // Pieces may end inside a character (byte tokens of CJK text or emoji): print whole characters only.
  Utf8Stream text;
  const GenerateStats stats =
      generate(backend, model.tokenizer, g, [&text](std::string_view piece) { write_stdout(text.push(piece)); });
  write_stdout(text.flush() + "\n");
  if (logits_writer) logits_writer->commit();
  std::string reason;
  std::fprintf(
      stderr,
      "\nmodel: %s (%lld layers, width %lld)\n"
      "prompt:     %lld tokens in %.3f s (%.1f tokens/s)\n"
      "generation: %lld tokens in %.3f s (%.1f tokens/s)%s\n"
      "placement:  %s (%s)\n"
      "%s%s",
      model.path.c_str(), static_cast<long long>(model.config.n_layer), static_cast<long long>(model.config.n_embd),
      static_cast<long long>(stats.prompt_tokens), stats.prompt_seconds, stats.prompt_tokens_per_second(),
      static_cast<long long>(stats.generated_tokens), stats.generate_seconds, stats.generate_tokens_per_second(),
      stop_reason(stats, n_ctx, reason), runner.placement_summary().c_str(), placement_origin(f.placement, ro).c_str(),
      predicted_vs_measured(runner, ro, stats.prompt_tokens_per_second(), stats.generate_tokens_per_second()).c_str(),
      device_memory_line(runner.scheduler().memory()).c_str());
  if (ro.link_gbps > 0) std::fprintf(stderr, "link:       %s\n", link_note(ro.link_gbps, runner.placements()).c_str());
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
  add_context_flags(*cmd, o->context);
  add_sampling_flags(*cmd, o->sampling);
  add_placement_flags(*cmd, o->placement);
  cmd->add_option("--logits-out", o->logits_out,
                  "Write the logits of every evaluated position to this file (float32; layout in the README)");
  cmd->add_flag("--chat", o->chat,
                "Answer the prompt as one chat turn in the model's chat format (with --system), stopping at the end "
                "of the turn");
  add_chat_flags(*cmd, o->chat_flags);
  return [o] { return run(*o); };
}

}  // namespace ferry::cli
