#include "serve_http.hpp"

#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "ferry/error.hpp"
#include "ferry/text/tokenizer.hpp"

namespace ferry::serve {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// How long a response waits for text before it writes a keep-alive (an SSE comment, or a space before a JSON body):
// the write is how a client that went away is noticed while its request waits or thinks.
constexpr auto kProbeInterval = std::chrono::milliseconds(1000);
constexpr auto kWaitSlice = std::chrono::milliseconds(200);

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  res.set_content(dump(error_json(e)), "application/json");
}

// Equal strings, in time that does not depend on where they differ (only on the length).
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(static_cast<unsigned char>(a[i] ^ b[i]));
  return diff == 0;
}

uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  ServedModel model;
  HttpOptions options;
  httplib::Server server;
  std::mutex tokenizer_mutex;  // the tokenizer is used by one worker at a time
  std::atomic<uint64_t> next_id{1};
  std::atomic<int64_t> in_flight{0};        // responses not yet fully written
  std::atomic<uint64_t> responses[6] = {};  // by status class: 1xx .. 5xx (index 1..5)
  std::mt19937_64 seeds{std::random_device{}()};
  std::mutex seeds_mutex;

  Impl(Engine& e, ServedModel m, HttpOptions o) : engine(e), model(std::move(m)), options(std::move(o)) {}

  void routes();
  void complete(const httplib::Request& req, httplib::Response& res, Endpoint endpoint);
  GenerationRequest generation(const ApiRequest& a);
  std::string metrics_text() const;
};

GenerationRequest HttpServer::Impl::generation(const ApiRequest& a) {
  GenerationRequest g;
  {
    std::lock_guard lock(tokenizer_mutex);
    try {
      if (a.endpoint == Endpoint::CHAT) {
        if (model.chat == nullptr) throw ApiError(400, "invalid_request_error", "no_chat_format", model.chat_error);
        std::vector<ChatMessage> messages = a.messages;
        if (!model.default_system.empty() && messages.front().role != "system")
          messages.insert(messages.begin(), ChatMessage{"system", model.default_system});
        g.prompt = chat_tokens(*model.chat, *model.tokenizer, messages, true);
        g.stop_tokens = model.chat->end_of_turn;
        g.trim_leading_space = true;
        g.label = "chat";
      } else {
        g.prompt = model.tokenizer->encode(a.prompt, model.add_bos);
        g.label = "completion";
      }
    } catch (const Error& e) {
      bad_request("invalid_value", e.what());
    }
  }
  g.max_tokens = a.max_tokens;
  g.ignore_eos = a.ignore_eos;
  g.stop = a.stop;
  g.sampler.temperature = a.temperature;
  g.sampler.top_p = a.top_p;
  g.sampler.top_k = 0;  // OpenAI's sampling has no top-k cut
  if (a.seed) {
    g.sampler.seed = *a.seed;
  } else {
    std::lock_guard lock(seeds_mutex);
    g.sampler.seed = seeds();
  }
  return g;
}

namespace {

// What a streamed or plain response's content provider keeps between its calls.
struct ResponseState {
  std::shared_ptr<Job> job;
  Endpoint endpoint;
  ResponseHead head;
  bool stream = false;
  bool include_usage = false;
  bool first = true;
  std::string text;  // the whole answer (plain responses)
  Clock::time_point last_write = Clock::now();
};

bool write(httplib::DataSink& sink, ResponseState& s, const std::string& data) {
  s.last_write = Clock::now();
  return sink.write(data.data(), data.size());
}

bool write_event(httplib::DataSink& sink, ResponseState& s, const json& value) {
  return write(sink, s, "data: " + dump(value) + "\n\n");
}

// One call of the content provider: forwards what the job produced since the last call. False: the client is gone
// (the releaser then cancels the job).
bool provide(httplib::DataSink& sink, ResponseState& s) {
  const JobUpdate u = s.job->wait(kWaitSlice);
  if (s.stream && !u.text.empty()) {
    if (!write_event(sink, s, chunk_json(s.endpoint, s.head, u.text, std::nullopt, s.first))) return false;
    s.first = false;
  } else {
    s.text += u.text;
  }
  if (u.done) {
    if (!u.error.empty()) {
      const ApiError e(500, "server_error", "generation_failed", "generation failed: " + u.error);
      if (!(s.stream ? write_event(sink, s, error_json(e)) : write(sink, s, dump(error_json(e))))) return false;
    } else if (s.stream) {
      if (!write_event(sink, s, chunk_json(s.endpoint, s.head, "", u.finish, s.first))) return false;
      if (s.include_usage && !write_event(sink, s, usage_chunk_json(s.endpoint, s.head, u.usage))) return false;
    } else if (!write(sink, s, dump(completion_json(s.endpoint, s.head, s.text, u.finish, u.usage)))) {
      return false;
    }
    if (s.stream && !write(sink, s, "data: [DONE]\n\n")) return false;
    sink.done();
    return true;
  }
  if (Clock::now() - s.last_write >= kProbeInterval)
    return write(sink, s, s.stream ? std::string(": keep-alive\n\n") : std::string(" "));
  return true;
}

}  // namespace

void HttpServer::Impl::complete(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  std::shared_ptr<Job> job;
  auto state = std::make_shared<ResponseState>();
  try {
    const ApiRequest a = parse_request(endpoint, req.body, options.limits);
    job = engine.submit(generation(a));
    state->job = job;
    state->endpoint = endpoint;
    state->stream = a.stream;
    state->include_usage = a.include_usage;
    state->head = {std::string(endpoint == Endpoint::CHAT ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++),
                   static_cast<int64_t>(std::time(nullptr)), a.model.empty() ? options.model_name : a.model};
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  }
  ++in_flight;
  auto provider = [state](size_t /*offset*/, httplib::DataSink& sink) { return provide(sink, *state); };
  auto release = [this, job](bool success) {
    if (!success) job->cancel();  // the client went away (or the write failed): free the slot
    --in_flight;
  };
  if (state->stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", provider, release);
  } else {
    res.set_chunked_content_provider("application/json", provider, release);
  }
}

std::string HttpServer::Impl::metrics_text() const {
  const EngineMetrics m = engine.metrics();
  std::string out;
  auto line = [&out](const char* name, const char* type, const std::string& value, const char* help) {
    out +=
        std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + value + "\n";
  };
  line("ferry_requests_finished_total", "counter", std::to_string(m.requests_finished), "Requests answered");
  line("ferry_requests_cancelled_total", "counter", std::to_string(m.requests_cancelled),
       "Requests dropped because their client went away");
  line("ferry_requests_failed_total", "counter", std::to_string(m.requests_failed), "Requests whose step failed");
  line("ferry_prompt_tokens_total", "counter", std::to_string(m.prompt_tokens), "Prompt tokens of answered requests");
  line("ferry_generated_tokens_total", "counter", std::to_string(m.generated_tokens), "Tokens generated");
  line("ferry_steps_total", "counter", std::to_string(m.steps), "Model steps run");
  line("ferry_step_tokens_total", "counter", std::to_string(m.step_tokens), "Tokens over all steps");
  line("ferry_busy_seconds_total", "counter", std::to_string(m.busy_seconds), "Seconds spent in model steps");
  line("ferry_requests_active", "gauge", std::to_string(m.active), "Requests in a slot");
  line("ferry_requests_queued", "gauge", std::to_string(m.queued), "Requests waiting for a slot");
  line("ferry_resident_memory_bytes", "gauge", std::to_string(resident_bytes()), "Resident set size of the server");
  out +=
      "# HELP ferry_http_responses_total HTTP responses by status class\n# TYPE ferry_http_responses_total counter\n";
  for (int c = 1; c <= 5; ++c)
    out += "ferry_http_responses_total{code=\"" + std::to_string(c) + "xx\"} " + std::to_string(responses[c].load()) +
           "\n";
  return out;
}

void HttpServer::Impl::routes() {
  server.set_payload_max_length(options.max_body_bytes);
  server.new_task_queue = [n = options.threads] { return new httplib::ThreadPool(n); };
  // An idle keep-alive connection holds its worker: clients that open one per request (and close it late) must not
  // starve the others for long.
  server.set_keep_alive_timeout(2);
  // Every /v1 route and /metrics need the key when one is set; /health tells a load balancer the server is up.
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string bearer = "Bearer ";
    if (auth.compare(0, bearer.size(), bearer) == 0 && same_secret(auth.substr(bearer.size()), options.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid_request_error", "invalid_api_key",
                             "missing or wrong API key: send 'Authorization: Bearer KEY' with the key given to "
                             "`ferry serve --api-key`"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // httplib's own refusals (404, 413 for a body over the limit, 400 for a broken request) in OpenAI's shape.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message = "HTTP " + std::to_string(res.status);
        if (res.status == 404) message = "no route " + req.method + " " + req.path;
        if (res.status == 413) message = "the request body is larger than this server accepts";
        send_error(res, ApiError(res.status, "invalid_request_error", res.status == 404 ? "not_found" : "bad_request",
                                 message));
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "server_error", "internal_error", what));
  });
  server.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    const int c = res.status / 100;
    if (c >= 1 && c <= 5) ++responses[c];
  });
  server.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res) { complete(req, res, Endpoint::CHAT); });
  server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    complete(req, res, Endpoint::COMPLETION);
  });
  server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const json body = {{"object", "list"},
                       {"data", json::array({{{"id", options.model_name},
                                              {"object", "model"},
                                              {"created", static_cast<int64_t>(std::time(nullptr))},
                                              {"owned_by", "ferry"}}})}};
    res.set_content(dump(body), "application/json");
  });
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
}

HttpServer::HttpServer(Engine& engine, ServedModel model, HttpOptions options)
    : m_impl(std::make_unique<Impl>(engine, std::move(model), std::move(options))) {
  m_impl->routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  const HttpOptions& o = m_impl->options;
  int port = o.port;
  if (o.port == 0) {
    port = m_impl->server.bind_to_any_port(o.host);
  } else if (!m_impl->server.bind_to_port(o.host, o.port)) {
    port = -1;
  }
  if (port <= 0)
    fail(ErrorCategory::IO, "serve: cannot listen on " + o.host + ":" + std::to_string(o.port) +
                                " (the address is in use, not this machine's, or the port needs privileges)");
  return port;
}

void HttpServer::listen() { m_impl->server.listen_after_bind(); }

void HttpServer::stop(double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (m_impl->in_flight.load() > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  m_impl->server.stop();
}

}  // namespace ferry::serve
