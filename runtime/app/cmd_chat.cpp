// `ferry chat [MODEL] [--system TEXT] [--chat-format NAME] [-n N] ...`: a conversation on standard input and output.
// Each line read is a user message; the answer is streamed as it comes, in the model's chat format (chat.hpp), and
// the KV cache is kept between turns so a turn evaluates only its own tokens. A "> " prompt is shown when standard
// input is a terminal; `/exit` or the end of input ends the conversation.
//
// Ctrl-C (SIGINT) during an answer stops that answer, which stays in the conversation; at the prompt it quits. The
// handler only sets a flag: the generation loop checks it between tokens, and reading a line is interrupted by it
// (installed without SA_RESTART while reading, with it while answering, so a write to the terminal is never cut).
//
// A conversation that no longer fits the context ends with a message and exit status 1: ferry does not drop history
// silently. -v prints after each turn where its tokens went in the cache and how fast they ran.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/text/chat.hpp"
#include "ferry/text/utf8_stream.hpp"
#include "generation_flags.hpp"
#include "model_command.hpp"

namespace ferry::cli {
namespace {

struct ChatCommandFlags {
  std::string model;
  ChatFlags chat;
  int64_t n_predict = 512;
  ContextFlags context;
  SamplingFlags sampling;
  PlacementFlags placement;
  bool verbose = false;
};

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the SIGINT handler stores into it");

extern "C" void on_sigint(int) { g_interrupted.store(true); }

// SIGINT sets g_interrupted while this lives; the previous disposition comes back after.
class InterruptHandler {
 public:
  InterruptHandler() { ::sigaction(SIGINT, nullptr, &m_previous); }
  ~InterruptHandler() {
    if (m_restore) ::sigaction(SIGINT, &m_previous, nullptr);
  }
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;
  // restart: interrupted system calls resume (answering) or fail with EINTR (reading a line).
  void install(bool restart) {
    struct sigaction action {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    action.sa_flags = restart ? SA_RESTART : 0;
    ::sigaction(SIGINT, &action, nullptr);
  }
  // Ctrl-C ended the chat: the process is on its way out (freeing the model and the device can take a while), and a
  // second Ctrl-C in that time must not turn a clean exit into death by signal. The handler stays.
  void keep_until_exit() noexcept { m_restore = false; }

 private:
  struct sigaction m_previous {};
  bool m_restore = true;
};

// One line of standard input without its line end; nullopt at the end of input or when interrupted.
std::optional<std::string> read_line() {
  char* buffer = nullptr;
  size_t capacity = 0;
  const ssize_t n = ::getline(&buffer, &capacity, stdin);
  std::optional<std::string> line;
  if (n >= 0) {
    line.emplace(buffer, static_cast<size_t>(n));
    while (!line->empty() && (line->back() == '\n' || line->back() == '\r')) line->pop_back();
  }
  std::free(buffer);
  return line;
}

std::string stop_text(const GenerateStats& s) {
  if (s.stopped_at_stop_token || s.stopped_at_eos) return "end of turn";
  if (s.cancelled) return "stopped by Ctrl-C";
  if (s.stopped_at_context) return "context full";
  return "-n limit";
}

int chat(const ChatCommandFlags& f) {
  // Every flag before the model is loaded.
  const SamplerConfig sampler = sampler_config(f.sampling);
  LlamaRunnerOptions ro = runner_options(f.placement);
  const std::optional<ChatFormatId> forced = chat_format_flag(f.chat);
  const DefaultModelChoice default_choice = f.model.empty() ? default_model_choice() : DefaultModelChoice::SMOLLM2;

  const LoadedModel model(model_path_or_default(f.model, default_choice));
  const int64_t n_ctx = context_length(f.context, model);
  ModelChatFormat format = model_chat_format(model, forced);
  ro.n_ctx = n_ctx;
  ro.max_tokens = std::min<int64_t>(512, n_ctx);
  note_when_cpu_only(ro.policy);
  LlamaRunner runner(model.config, model.weights, ro);
  if (!runner.plan_note().empty()) std::fprintf(stderr, "ferry: %s\n", runner.plan_note().c_str());
  // From here Ctrl-C is ours (before the banner, so whoever reads it may press Ctrl-C).
  InterruptHandler interrupts;
  interrupts.install(false);
  std::fprintf(stderr, "ferry: chat with %s: format %s (%s), context %lld tokens; /exit or end of input quits\n",
               model.path.c_str(), std::string(format.format.name()).c_str(), format.origin.c_str(),
               static_cast<long long>(n_ctx));
  if (f.verbose)
    std::fprintf(stderr, "placement:  %s (%s)\n%s", runner.placement_summary().c_str(),
                 placement_origin(f.placement, ro).c_str(), device_memory_line(runner.scheduler().memory()).c_str());

  ChatSession session(runner, model.tokenizer, std::move(format), f.chat.system);
  ChatReplyOptions options;
  options.max_new_tokens = f.n_predict;
  options.sampler = sampler;
  options.cancel = &g_interrupted;
  options.explain_non_finite = [&model] { return model.explain_non_finite(); };

  const bool interactive = ::isatty(STDIN_FILENO) == 1;
  for (int turns = 0;;) {
    interrupts.install(false);
    if (interactive) write_stdout("> ");
    // A Ctrl-C that came before the read began does not interrupt it: look first.
    const std::optional<std::string> line = g_interrupted ? std::nullopt : read_line();
    if (!line || g_interrupted) {
      if (g_interrupted) interrupts.keep_until_exit();
      if (interactive) write_stdout("\n");
      return 0;
    }
    if (*line == "/exit") return 0;
    if (line->find_first_not_of(" \t") == std::string::npos) continue;  // nothing to answer
    ++turns;
    interrupts.install(true);
    Utf8Stream text;
    const ChatTurn turn =
        session.reply(*line, options, [&text](std::string_view piece) { write_stdout(text.push(piece)); });
    write_stdout(text.flush());
    g_interrupted = false;  // a Ctrl-C during the answer stopped only the answer
    if (turn.context_full) {
      std::fprintf(stderr,
                   "ferry: the conversation with this message is %lld tokens long; the context holds %lld, and ferry "
                   "does not drop history: start again with a larger --ctx\n",
                   static_cast<long long>(turn.needed), static_cast<long long>(n_ctx));
      return 1;
    }
    write_stdout("\n");
    const GenerateStats& s = turn.stats;
    if (f.verbose)
      std::fprintf(stderr,
                   "turn %d: %lld prompt tokens at position %lld (%.1f tokens/s), %lld generated (%.1f tokens/s; "
                   "%s)\n",
                   turns, static_cast<long long>(s.prompt_tokens), static_cast<long long>(turn.position),
                   s.prompt_tokens_per_second(), static_cast<long long>(s.generated_tokens),
                   s.generate_tokens_per_second(), stop_text(s).c_str());
    if (s.cancelled)
      std::fprintf(stderr, "ferry: answer stopped; it stays in the conversation (Ctrl-C at the prompt quits)\n");
    if (s.stopped_at_context) {
      std::fprintf(stderr,
                   "ferry: the context of %lld tokens is full; ferry does not drop history: start again with a "
                   "larger --ctx\n",
                   static_cast<long long>(n_ctx));
      return 1;
    }
  }
}

}  // namespace

Action add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatCommandFlags>();
  CLI::App* cmd = app.add_subcommand(
      "chat", "Chat with an instruction-tuned model on standard input and output, in its chat format");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model; see FERRY_DEFAULT_MODEL)");
  add_chat_flags(*cmd, o->chat);
  cmd->add_option("-n,--n-predict", o->n_predict, "Most tokens per answer")->check(CLI::Range(1, 1 << 20));
  add_context_flags(*cmd, o->context);
  add_sampling_flags(*cmd, o->sampling);
  add_placement_flags(*cmd, o->placement);
  cmd->add_flag("-v,--verbose", o->verbose,
                "After each answer, print on stderr where the turn's tokens went in the cache and their rates");
  return [o] { return chat(*o); };
}

}  // namespace ferry::cli
