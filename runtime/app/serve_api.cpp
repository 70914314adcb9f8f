#include "serve_api.hpp"

#include <cmath>
#include <limits>

#include "ferry/text/utf8.hpp"

namespace ferry::serve {
namespace {

using nlohmann::json;

std::string type_of(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

[[noreturn]] void wrong_type(const std::string& field, const std::string& expected, const json& v) {
  bad_request("invalid_type", "'" + field + "' must be " + expected + ", not " + type_of(v));
}

const json* field(const json& body, const char* name) {
  const auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number_in(const json& body, const char* name, double lo, double hi, double fallback) {
  const json* v = field(body, name);
  if (v == nullptr) return fallback;
  if (!v->is_number()) wrong_type(name, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad_request("invalid_value", "'" + std::string(name) + "' is " + v->dump() + "; it must be in [" + json(lo).dump() +
                                     ", " + json(hi).dump() + "]");
  return x;
}

std::optional<int64_t> integer(const json& body, const char* name) {
  const json* v = field(body, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(name, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad_request("invalid_value", "'" + std::string(name) + "' is " + v->dump() + ", beyond a 64-bit integer");
  return v->get<int64_t>();
}

bool boolean(const json& body, const char* name) {
  const json* v = field(body, name);
  if (v == nullptr) return false;
  if (!v->is_boolean()) wrong_type(name, "a boolean", *v);
  return v->get<bool>();
}

void check_text(const std::string& field_name, const std::string& text) {
  if (first_invalid_utf8(text) != kValidUtf8) bad_request("invalid_value", "'" + field_name + "' is not valid UTF-8");
}

// A message's content: a string, or an array of parts of which the text ones count (joined).
std::string message_content(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(where + ".content", "a string or an array of text parts", content);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object()) wrong_type(where + ".content[]", "an object", part);
    const json* type = field(part, "type");
    if (type == nullptr || !type->is_string() || type->get<std::string>() != "text")
      bad_request("unsupported_content", where + ".content: only parts of type 'text' are supported");
    const json* t = field(part, "text");
    if (t == nullptr || !t->is_string()) wrong_type(where + ".content[].text", "a string", t ? *t : json());
    text += t->get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const json& body, const ApiLimits& limits) {
  const json* v = field(body, "messages");
  if (v == nullptr) bad_request("missing_field", "'messages' is required");
  if (!v->is_array()) wrong_type("messages", "an array", *v);
  if (v->empty()) bad_request("invalid_value", "'messages' is empty");
  if (v->size() > limits.max_messages)
    bad_request("invalid_value", "'messages' holds " + std::to_string(v->size()) + " messages; at most " +
                                     std::to_string(limits.max_messages) + " are accepted");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& m = (*v)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) wrong_type(where, "an object", m);
    const json* role = field(m, "role");
    if (role == nullptr || !role->is_string()) wrong_type(where + ".role", "a string", role ? *role : json());
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant")
      bad_request("invalid_value", where + ".role is '" + r + "'; ferry serves system, user and assistant messages");
    if (r == "system" && i != 0)
      bad_request("invalid_value", where + " is a system message; only the first message may be one");
    const json* content = field(m, "content");
    std::string text = content == nullptr ? std::string() : message_content(*content, where);
    check_text(where + ".content", text);
    messages.push_back({std::move(r), std::move(text)});
  }
  if (messages.back().role == "assistant")
    bad_request("invalid_value", "the last message is the assistant's; the conversation must end with the user's");
  return messages;
}

std::string parse_prompt(const json& body) {
  const json* v = field(body, "prompt");
  if (v == nullptr) bad_request("missing_field", "'prompt' is required");
  std::string prompt;
  if (v->is_string()) {
    prompt = v->get<std::string>();
  } else if (v->is_array() && v->size() == 1 && (*v)[0].is_string()) {
    prompt = (*v)[0].get<std::string>();
  } else {
    wrong_type("prompt", "a string (or an array of one string)", *v);
  }
  check_text("prompt", prompt);
  return prompt;
}

std::vector<std::string> parse_stop(const json& body, const ApiLimits& limits) {
  const json* v = field(body, "stop");
  if (v == nullptr) return {};
  std::vector<std::string> stop;
  if (v->is_string()) {
    stop.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const json& s : *v) {
      if (!s.is_string()) wrong_type("stop[]", "a string", s);
      stop.push_back(s.get<std::string>());
    }
  } else {
    wrong_type("stop", "a string or an array of strings", *v);
  }
  if (stop.size() > limits.max_stop)
    bad_request("invalid_value", "'stop' holds " + std::to_string(stop.size()) + " sequences; at most " +
                                     std::to_string(limits.max_stop) + " are accepted");
  for (const std::string& s : stop) {
    if (s.empty()) bad_request("invalid_value", "'stop' holds an empty string");
    check_text("stop", s);
  }
  return stop;
}

}  // namespace

void bad_request(const std::string& code, const std::string& message) {
  throw ApiError(400, "invalid_request_error", code, message);
}

json error_json(const ApiError& e) {
  return json{{"error", {{"message", e.message()}, {"type", e.type()}, {"code", e.code()}, {"param", nullptr}}}};
}

ApiRequest parse_request(Endpoint endpoint, std::string_view body_text, const ApiLimits& limits) {
  json body = json::parse(body_text.begin(), body_text.end(), nullptr, false);
  if (body.is_discarded()) bad_request("invalid_json", "the request body is not valid JSON");
  if (!body.is_object()) bad_request("invalid_json", "the request body must be a JSON object, not " + type_of(body));
  ApiRequest r;
  r.endpoint = endpoint;
  if (endpoint == Endpoint::CHAT) {
    r.messages = parse_messages(body, limits);
  } else {
    r.prompt = parse_prompt(body);
  }
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) wrong_type("model", "a string", *m);
    r.model = m->get<std::string>();
  }
  std::optional<int64_t> max_tokens = integer(body, "max_tokens");
  if (!max_tokens) max_tokens = integer(body, "max_completion_tokens");
  if (max_tokens && (*max_tokens < 1 || *max_tokens > limits.max_tokens))
    bad_request("invalid_value", "'max_tokens' is " + std::to_string(*max_tokens) + "; this server accepts 1.." +
                                     std::to_string(limits.max_tokens));
  const int64_t fallback = limits.default_max_tokens > 0 ? limits.default_max_tokens : limits.max_tokens;
  r.max_tokens = max_tokens ? *max_tokens : fallback;
  r.temperature = static_cast<float>(number_in(body, "temperature", 0.0, 2.0, 1.0));
  r.top_p = static_cast<float>(number_in(body, "top_p", 0.0, 1.0, 1.0));
  if (field(body, "top_p") != nullptr && r.top_p <= 0.0f) bad_request("invalid_value", "'top_p' must be above 0");
  if (const std::optional<int64_t> seed = integer(body, "seed")) r.seed = static_cast<uint64_t>(*seed);
  if (const std::optional<int64_t> n = integer(body, "n"); n && *n != 1)
    bad_request("invalid_value", "'n' is " + std::to_string(*n) + "; ferry serve answers with one choice (n = 1)");
  r.stop = parse_stop(body, limits);
  r.stream = boolean(body, "stream");
  r.ignore_eos = boolean(body, "ignore_eos");
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    r.include_usage = boolean(*so, "include_usage");
  }
  // Known fields ferry does not act on: their type is still checked, so a client's mistake is not silently taken.
  (void)number_in(body, "frequency_penalty", -2.0, 2.0, 0.0);
  (void)number_in(body, "presence_penalty", -2.0, 2.0, 0.0);
  if (const json* u = field(body, "user"); u != nullptr && !u->is_string()) wrong_type("user", "a string", *u);
  return r;
}

std::string_view finish_reason_name(FinishReason reason) noexcept {
  return reason == FinishReason::STOP ? "stop" : "length";
}

namespace {

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

}  // namespace

json completion_json(Endpoint endpoint, const ResponseHead& head, const std::string& text, FinishReason finish,
                     const Usage& usage) {
  json choice = {{"index", 0}, {"finish_reason", finish_reason_name(finish)}, {"logprobs", nullptr}};
  if (endpoint == Endpoint::CHAT) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  return {{"id", head.id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion" : "text_completion"},
          {"created", head.created},
          {"model", head.model},
          {"choices", json::array({choice})},
          {"usage", usage_json(usage)}};
}

json chunk_json(Endpoint endpoint, const ResponseHead& head, const std::string& text,
                std::optional<FinishReason> finish, bool role_first) {
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish ? json(finish_reason_name(*finish)) : json(nullptr);
  if (endpoint == Endpoint::CHAT) {
    json delta = json::object();
    if (role_first) delta["role"] = "assistant";
    if (!text.empty() || role_first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", head.id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion.chunk" : "text_completion"},
          {"created", head.created},
          {"model", head.model},
          {"choices", json::array({choice})}};
}

json usage_chunk_json(Endpoint endpoint, const ResponseHead& head, const Usage& usage) {
  return {{"id", head.id},
          {"object", endpoint == Endpoint::CHAT ? "chat.completion.chunk" : "text_completion"},
          {"created", head.created},
          {"model", head.model},
          {"choices", json::array()},
          {"usage", usage_json(usage)}};
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace ferry::serve
