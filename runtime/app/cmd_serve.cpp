// `ferry serve [MODEL] [--host H] [--port P] [--parallel N] [--ctx N] [--api-key KEY] ...`: an OpenAI-compatible
// HTTP server (POST /v1/chat/completions and /v1/completions, plain or streamed; GET /v1/models, /health, /metrics).
// Up to --parallel requests are decoded together, each in its own KV cache of --ctx positions (serve_engine.hpp); the
// placement is planned for all of those caches, and a --parallel whose caches do not fit is refused with the largest
// that would. Safe by default: loopback only, a bounded body and max_tokens, a key when --api-key is given.
//
// SIGTERM or SIGINT: no new requests (503), the ones in flight and queued finish and are delivered, then the process
// exits 0. Both signals are blocked in every thread and taken by one thread with sigwait, so no handler runs inside
// the model's or the HTTP library's code.
#include <pthread.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/this_device.hpp"
#include "ferry/offload/host_memory.hpp"
#include "generation_flags.hpp"
#include "model_command.hpp"
#include "serve_engine.hpp"
#if defined(FERRY_HAVE_HTTP_SERVER)
#include "serve_http.hpp"
#endif

namespace ferry::cli {
namespace {

struct ServeFlags {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int64_t batch = 128;
  int64_t max_tokens = 4096;
  int queue = 64;
  std::string api_key;
  ContextFlags context;
  PlacementFlags placement;
  ChatFlags chat;
};

#if defined(FERRY_HAVE_HTTP_SERVER)

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

// The runner for --parallel caches; BUDGET naming the largest --parallel that fits when they do not.
std::unique_ptr<LlamaRunner> make_runner(const LoadedModel& model, const LlamaRunnerOptions& ro) {
  try {
    return std::make_unique<LlamaRunner>(model.config, model.weights, ro);
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::BUDGET || ro.n_seq == 1) throw;
    // Fits: the plan within the VRAM budget and the runner's host memory within what the process can take.
    const DeviceProfile device = this_device_profile();
    const uint64_t host = host_memory_available().bytes;
    auto fits = [&](int64_t n) {
      LlamaRunnerOptions o = ro;
      o.n_seq = n;
      try {
        const Plan plan = plan_llama_run(model.config, model.weights, o, device);
        return llama_host_memory(model.config, model.weights, o, plan.placements).total() <= host;
      } catch (const Error& inner) {
        if (inner.category() != ErrorCategory::BUDGET) throw;
        return false;
      }
    };
    int64_t lo = 0, hi = ro.n_seq;  // fits(lo) (or lo = 0), not fits(hi)
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
    fail(ErrorCategory::BUDGET, std::string(e.what()) + "\n--parallel " + std::to_string(ro.n_seq) +
                                    " needs a KV cache of --ctx " + std::to_string(ro.n_ctx) + " positions each; " +
                                    (lo > 0 ? "the largest --parallel that fits is " + std::to_string(lo)
                                            : std::string("not even one sequence fits at this --ctx")));
  }
}

// SIGTERM and SIGINT, blocked in the calling thread (and so in every thread it starts from now on).
sigset_t block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Takes a stop signal that is already pending (sent while the model loaded), without waiting.
bool take_pending_stop_signal(const sigset_t& signals) {
  const timespec now{0, 0};
  return sigtimedwait(&signals, nullptr, &now) > 0;
}

int serve(const ServeFlags& f) {
  // The stop signals are blocked before anything starts a thread: oneTBB's workers (making the synthetic default
  // model, loading), the HTTP pool, and the CUDA driver's own threads when the runner creates its context. A thread
  // that does not block them takes a SIGTERM with the default action, which ends the process mid-answer (seen on the
  // H200: exit 143 instead of 0). One sent during start-up waits, pending, and is taken below; the default model's
  // download (pip) starts with a clean mask, so Ctrl-C still stops it.
  const sigset_t signals = block_stop_signals();
  // Every flag before the model is loaded.
  if (f.port < 0 || f.port > 65535) bad_flag("--port", std::to_string(f.port) + " is not a port (0..65535; 0: any)");
  LlamaRunnerOptions ro = runner_options(f.placement);
  const std::optional<ChatFormatId> forced = chat_format_flag(f.chat);
  const DefaultModelChoice default_choice = f.model.empty() ? default_model_choice() : DefaultModelChoice::SMOLLM2;

  const LoadedModel model(model_path_or_default(f.model, default_choice));
  const int64_t n_ctx = context_length(f.context, model);
  if (f.parallel > n_ctx)
    bad_flag("--parallel", std::to_string(f.parallel) + " sequences are more than the context of " +
                               std::to_string(n_ctx) + " tokens");
  std::optional<ModelChatFormat> format;
  std::string chat_error;
  try {
    format = model_chat_format(model, forced);
  } catch (const Error& e) {
    if (e.category() != ErrorCategory::UNSUPPORTED) throw;
    chat_error = std::string(e.what()) + " (restart the server with --chat-format; /v1/completions works without)";
  }
  ro.n_ctx = n_ctx;
  ro.n_seq = f.parallel;
  // A step holds one token of each answering request and prompt chunks of at most --batch tokens.
  ro.max_tokens = std::min<int64_t>(n_ctx, f.parallel + f.batch);
  ro.planned_prompt_tokens = f.batch;
  note_when_cpu_only(ro.policy);
  const std::unique_ptr<LlamaRunner> runner = make_runner(model, ro);
  if (!runner->plan_note().empty()) std::fprintf(stderr, "ferry: %s\n", runner->plan_note().c_str());

  serve::RunnerLm lm(*runner);
  serve::EngineOptions eo;
  eo.prefill_chunk = f.batch;
  eo.max_queue = static_cast<size_t>(f.queue);
  serve::Engine engine(lm, model.tokenizer, eo);

  serve::HttpOptions ho;
  ho.host = f.host;
  ho.port = f.port;
  ho.api_key = f.api_key;
  // A worker serves one connection at a time, idle keep-alive ones included; more connections wait for a worker.
  ho.threads = static_cast<size_t>(f.parallel + 32);
  ho.limits.max_tokens = std::min<int64_t>(f.max_tokens, n_ctx);
  ho.limits.default_max_tokens = ho.limits.max_tokens;
  ho.model_name = std::filesystem::path(model.path).filename().string();
  serve::ServedModel served;
  served.tokenizer = &model.tokenizer;
  served.chat = format ? &*format : nullptr;
  served.chat_error = chat_error;
  served.add_bos = model.add_bos;
  served.default_system = f.chat.system;

  if (take_pending_stop_signal(signals)) {
    std::fprintf(stderr, "ferry serve: stopped during start-up (SIGTERM or SIGINT); nothing was served\n");
    return 0;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error return, not the end of the server

  serve::HttpServer http(engine, served, ho);
  const int port = http.bind();
  std::thread engine_thread([&engine] { engine.run(); });
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "ferry serve: %s: finishing the requests in flight, then exiting\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    engine.shutdown();
    engine_thread.join();
    http.stop(30.0);
  });
  // Named, so a test can tell it from a thread that should block the signals (sigwait unblocks them while it waits).
  pthread_setname_np(signal_thread.native_handle(), "ferry-signals");
  std::fprintf(stderr,
               "ferry serve: %s on http://%s:%d/v1 (%d parallel, context %lld tokens each, chat format %s); %s\n",
               ho.model_name.c_str(), f.host.c_str(), port, f.parallel, static_cast<long long>(n_ctx),
               format ? std::string(format->format.name()).c_str() : "none", runner->placement_summary().c_str());
  if (!is_loopback(f.host) && f.api_key.empty())
    std::fprintf(stderr,
                 "ferry serve: warning: %s is not a loopback address and no --api-key was given: anyone who "
                 "can reach this port can use the model\n",
                 f.host.c_str());
  std::fflush(stderr);
  http.listen();
  // listen() returns after the signal thread stopped the server, or on its own (a socket error): then wake that
  // thread so it drains and joins the engine.
  pthread_kill(signal_thread.native_handle(), SIGTERM);
  signal_thread.join();
  std::fprintf(stderr, "ferry serve: stopped\n");
  return 0;
}

#else

int serve(const ServeFlags&) {
  fail(ErrorCategory::UNSUPPORTED,
       "this ferry was built without an HTTP library, so `ferry serve` is not available: install libcpp-httplib-dev "
       "(scripts/install-deps.sh) and rebuild");
}

#endif

}  // namespace

Action add_serve_command(CLI::App& app) {
  auto o = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model; see FERRY_DEFAULT_MODEL)");
  cmd->add_option("--host", o->host, "Address to listen on (default loopback only; 0.0.0.0 for every interface)");
  cmd->add_option("--port", o->port, "TCP port (0: any free port, printed at start)");
  cmd->add_option("--parallel", o->parallel, "Requests decoded together, each with its own KV cache of --ctx positions")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--batch", o->batch, "Most prompt tokens of one request per step (chunked prefill)")
      ->check(CLI::Range(1, 8192));
  cmd->add_option("--max-tokens", o->max_tokens, "Most tokens a request may ask for (and the default)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--queue", o->queue, "Requests waiting for a slot beyond --parallel; more get 503")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--api-key", o->api_key,
                  "Ask every /v1 request for 'Authorization: Bearer KEY' (401 otherwise); FERRY_API_KEY keeps the key "
                  "out of the process list")
      ->envname("FERRY_API_KEY");
  add_context_flags(*cmd, o->context);
  add_placement_flags(*cmd, o->placement);
  add_chat_flags(*cmd, o->chat);
  return [o] { return serve(*o); };
}

}  // namespace ferry::cli
