// The OpenAI API as `ferry serve` speaks it: a request body checked field by field (an unknown field is ignored, a
// known one of the wrong type or out of range is refused), the response and stream-chunk objects, and the error
// object every refusal carries: {"error": {"message", "type", "code"}} with the HTTP status to send it with. Pure
// functions of their inputs (no model, no sockets), so the rules are tested on their own (tests/test_serve_api.cpp).
#pragma once

#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/text/chat_format.hpp"

namespace ferry::serve {

// A refusal with its HTTP status and OpenAI's error type ("invalid_request_error", "authentication_error", ...) and
// code ("invalid_json", "context_length_exceeded", ...).
class ApiError : public std::exception {
 public:
  ApiError(int status, std::string type, std::string code, std::string message)
      : m_status(status), m_type(std::move(type)), m_code(std::move(code)), m_message(std::move(message)) {}
  const char* what() const noexcept override { return m_message.c_str(); }
  int status() const noexcept { return m_status; }
  const std::string& type() const noexcept { return m_type; }
  const std::string& code() const noexcept { return m_code; }
  const std::string& message() const noexcept { return m_message; }

 private:
  int m_status;
  std::string m_type, m_code, m_message;
};

// 400 invalid_request_error with `code`, naming the field in the message.
[[noreturn]] void bad_request(const std::string& code, const std::string& message);

// {"error": {"message", "type", "code", "param": null}}.
nlohmann::json error_json(const ApiError& e);

enum class Endpoint { CHAT, COMPLETION };

struct ApiLimits {
  int64_t max_tokens = 4096;       // the most a request may ask for (more: 400)
  int64_t default_max_tokens = 0;  // what a request that names none gets (0: max_tokens)
  size_t max_messages = 1024;
  size_t max_stop = 4;  // stop sequences, as OpenAI allows
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::CHAT;
  std::vector<ChatMessage> messages;  // chat: system only first; text parts of array contents joined
  std::string prompt;                 // completions
  int64_t max_tokens = 0;             // resolved: the request's, or ApiLimits' default
  float temperature = 1.0f;           // OpenAI's defaults
  float top_p = 1.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage counts
  std::string model;           // echoed back; any name is accepted (the server has one model)
  bool ignore_eos = false;     // ferry's (and llama.cpp's) extension for benchmarks: EOS and end of turn do not stop
};

// Parses and validates a request body. Throws ApiError (400) for malformed JSON, a body that is not an object, a
// field of the wrong type or out of range, a missing `messages` / `prompt`, n other than 1.
ApiRequest parse_request(Endpoint endpoint, std::string_view body, const ApiLimits& limits);

enum class FinishReason { STOP, LENGTH };
std::string_view finish_reason_name(FinishReason reason) noexcept;

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// The id, creation time and model of one response, shared by its stream chunks.
struct ResponseHead {
  std::string id;  // "chatcmpl-N" / "cmpl-N"
  int64_t created = 0;
  std::string model;
};

// A whole answer: chat.completion or text_completion.
nlohmann::json completion_json(Endpoint endpoint, const ResponseHead& head, const std::string& text,
                               FinishReason finish, const Usage& usage);
// One stream chunk: chat.completion.chunk ({"delta": {"role"?, "content"?}}) or text_completion. `finish` set on the
// last chunk; role_first: the chat stream's first chunk carries the assistant role.
nlohmann::json chunk_json(Endpoint endpoint, const ResponseHead& head, const std::string& text,
                          std::optional<FinishReason> finish, bool role_first);
// The stream's usage chunk (stream_options.include_usage): empty choices and the usage object.
nlohmann::json usage_chunk_json(Endpoint endpoint, const ResponseHead& head, const Usage& usage);

// JSON text for the wire: invalid UTF-8 in generated text (a token split inside a character at the end of an answer)
// becomes U+FFFD instead of an exception.
std::string dump(const nlohmann::json& value);

}  // namespace ferry::serve
