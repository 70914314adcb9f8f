// The HTTP side of `ferry serve` (cpp-httplib): the OpenAI routes over the Engine, the API key, the body limit,
// server-sent events, /health and /metrics, and a drain for shutdown. Each request runs on one of httplib's worker
// threads, which only parses, tokenizes, submits and then forwards the job's text; the engine's thread does the rest.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/text/chat.hpp"
#include "serve_api.hpp"
#include "serve_engine.hpp"

namespace ferry::serve {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0: any free port (bind() says which)
  std::string api_key;  // empty: no key asked
  size_t max_body_bytes = 4u << 20;
  size_t threads = 32;  // httplib workers: connections served at once
  ApiLimits limits;
  std::string model_name;  // what /v1/models lists and responses echo
};

// What the routes need of the model besides the engine.
struct ServedModel {
  const Tokenizer* tokenizer = nullptr;
  const ModelChatFormat* chat = nullptr;  // null: /v1/chat/completions refused with chat_error
  std::string chat_error;
  bool add_bos = true;         // for /v1/completions prompts
  std::string default_system;  // `--system`: put first when a conversation has no system message
};

class HttpServer {
 public:
  HttpServer(Engine& engine, ServedModel model, HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the socket; returns the port. IO naming the address when it cannot.
  int bind();
  // Serves until stop(); returns then.
  void listen();
  // Waits (up to `timeout_s`) for the responses in flight to be written, then stops listening.
  void stop(double timeout_s);

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

}  // namespace ferry::serve
