// `ferry serve`'s request rules (runtime/app/serve_api.hpp): what a body may hold, what is refused with which code,
// and the shape of the objects an OpenAI client reads back.
#include <doctest/doctest.h>

#include <string>

#include "serve_api.hpp"

using namespace ferry::serve;
using nlohmann::json;

namespace {

ApiLimits limits() {
  ApiLimits l;
  l.max_tokens = 100;
  l.default_max_tokens = 50;
  return l;
}

// The ApiError a body is refused with; fails the test when it is accepted.
ApiError refusal(Endpoint endpoint, const std::string& body) {
  try {
    (void)parse_request(endpoint, body, limits());
  } catch (const ApiError& e) {
    return e;
  }
  FAIL("accepted: " << body);
  return ApiError(0, "", "", "");
}

}  // namespace

TEST_CASE("a chat request: messages, sampling fields, stop as a string or a list, stream options") {
  const ApiRequest r = parse_request(Endpoint::CHAT, R"({
    "model": "m", "messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
    "max_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": -3, "stop": "\n\n", "stream": true,
    "stream_options": {"include_usage": true}, "frequency_penalty": 0, "unknown_field": {"anything": [1]},
    "ignore_eos": true})",
                                     limits());
  REQUIRE(r.messages.size() == 2);
  CHECK(r.messages[0].role == "system");
  CHECK(r.messages[1].content == "Hi there");
  CHECK(r.max_tokens == 7);
  CHECK(r.temperature == 0.0f);
  CHECK(r.top_p == 0.5f);
  REQUIRE(r.seed.has_value());
  CHECK(*r.seed == static_cast<uint64_t>(int64_t{-3}));
  CHECK(r.stop == std::vector<std::string>{"\n\n"});
  CHECK(r.stream);
  CHECK(r.include_usage);
  CHECK(r.model == "m");
  CHECK(r.ignore_eos);

  const ApiRequest d = parse_request(Endpoint::CHAT, R"({"messages": [{"role": "user", "content": "x"}],
    "stop": ["a", "bc"], "max_tokens": null})",
                                     limits());
  CHECK(d.max_tokens == 50);  // the server's default
  CHECK(d.temperature == 1.0f);
  CHECK(!d.seed.has_value());
  CHECK(d.stop == std::vector<std::string>{"a", "bc"});
  CHECK(!d.stream);
}

TEST_CASE("a completion request: prompt as a string or a list of one string") {
  CHECK(parse_request(Endpoint::COMPLETION, R"({"prompt": "Once upon"})", limits()).prompt == "Once upon");
  CHECK(
      parse_request(Endpoint::COMPLETION, R"({"prompt": ["Once"], "max_completion_tokens": 3})", limits()).max_tokens ==
      3);
  CHECK(refusal(Endpoint::COMPLETION, R"({"prompt": ["a", "b"]})").code() == "invalid_type");
  CHECK(refusal(Endpoint::COMPLETION, R"({"prompt": 12})").code() == "invalid_type");
  CHECK(refusal(Endpoint::COMPLETION, R"({"messages": []})").code() == "missing_field");
}

TEST_CASE("malformed bodies and fields of the wrong type or range are 400s with an OpenAI error object") {
  struct Case {
    const char* body;
    const char* code;
    const char* says;  // part of the message: the field named
  };
  const Case cases[] = {
      {R"({"messages": [)", "invalid_json", "not valid JSON"},
      {"", "invalid_json", "not valid JSON"},
      {R"([1, 2])", "invalid_json", "JSON object"},
      {R"({})", "missing_field", "'messages'"},
      {R"({"messages": "hi"})", "invalid_type", "'messages' must be an array"},
      {R"({"messages": []})", "invalid_value", "'messages' is empty"},
      {R"({"messages": [3]})", "invalid_type", "messages[0]"},
      {R"({"messages": [{"role": "tool", "content": "x"}]})", "invalid_value", "messages[0].role"},
      {R"({"messages": [{"role": 1, "content": "x"}]})", "invalid_type", "messages[0].role"},
      {R"({"messages": [{"role": "user", "content": 5}]})", "invalid_type", "messages[0].content"},
      {R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "unsupported_content", "text"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})", "invalid_value",
       "messages[1] is a system message"},
      {R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})", "invalid_value",
       "end with the user's"},
      {R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": "5"})", "invalid_type", "'max_tokens'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 2.5})", "invalid_type", "'max_tokens'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 0})", "invalid_value", "1..100"},
      {R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 101})", "invalid_value", "1..100"},
      {R"({"messages": [{"role": "user", "content": "a"}], "max_tokens": 18446744073709551615})", "invalid_value",
       "64-bit"},
      {R"({"messages": [{"role": "user", "content": "a"}], "temperature": "hot"})", "invalid_type", "'temperature'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "temperature": 2.5})", "invalid_value", "'temperature'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "top_p": 0})", "invalid_value", "'top_p'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "seed": 1.5})", "invalid_type", "'seed'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "stop": [1]})", "invalid_type", "stop[]"},
      {R"({"messages": [{"role": "user", "content": "a"}], "stop": ["a","b","c","d","e"]})", "invalid_value",
       "at most 4"},
      {R"({"messages": [{"role": "user", "content": "a"}], "stop": [""]})", "invalid_value", "empty string"},
      {R"({"messages": [{"role": "user", "content": "a"}], "stream": "yes"})", "invalid_type", "'stream'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "ignore_eos": 1})", "invalid_type", "'ignore_eos'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "n": 2})", "invalid_value", "'n'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "model": 7})", "invalid_type", "'model'"},
      {R"({"messages": [{"role": "user", "content": "a"}], "presence_penalty": "x"})", "invalid_type",
       "'presence_penalty'"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"\\udc80\"}]}", "invalid_json", "not valid JSON"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.body);
    const ApiError e = refusal(Endpoint::CHAT, c.body);
    CHECK(e.status() == 400);
    CHECK(e.type() == "invalid_request_error");
    CHECK(e.code() == c.code);
    CHECK_MESSAGE(e.message().find(c.says) != std::string::npos, e.message());
    const json body = error_json(e);
    CHECK(body["error"]["message"] == e.message());
    CHECK(body["error"]["type"] == "invalid_request_error");
    CHECK(body["error"]["code"] == c.code);
  }
}

TEST_CASE("responses and stream chunks have the fields OpenAI clients read") {
  const ResponseHead head{"chatcmpl-1", 1700000000, "tiny.gguf"};
  const json full = completion_json(Endpoint::CHAT, head, "Hello", FinishReason::LENGTH, Usage{5, 3});
  CHECK(full["object"] == "chat.completion");
  CHECK(full["choices"][0]["message"]["role"] == "assistant");
  CHECK(full["choices"][0]["message"]["content"] == "Hello");
  CHECK(full["choices"][0]["finish_reason"] == "length");
  CHECK(full["usage"]["total_tokens"] == 8);
  const json text = completion_json(Endpoint::COMPLETION, head, "x", FinishReason::STOP, Usage{1, 1});
  CHECK(text["object"] == "text_completion");
  CHECK(text["choices"][0]["text"] == "x");
  CHECK(text["choices"][0]["finish_reason"] == "stop");

  const json first = chunk_json(Endpoint::CHAT, head, "He", std::nullopt, true);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["delta"]["role"] == "assistant");
  CHECK(first["choices"][0]["delta"]["content"] == "He");
  CHECK(first["choices"][0]["finish_reason"].is_null());
  const json last = chunk_json(Endpoint::CHAT, head, "", FinishReason::STOP, false);
  CHECK(last["choices"][0]["delta"].empty());
  CHECK(last["choices"][0]["finish_reason"] == "stop");
  const json usage = usage_chunk_json(Endpoint::CHAT, head, Usage{2, 4});
  CHECK(usage["choices"].empty());
  CHECK(usage["usage"]["completion_tokens"] == 4);
  // A token that ends inside a character must not make the response unserialisable.
  CHECK(dump(json{{"t", std::string("a\xE4\xB8")}}) == "{\"t\":\"a\xEF\xBF\xBD\"}");
}
