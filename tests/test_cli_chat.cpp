// `ferry chat` and `ferry run --chat` as a user runs them, on tiny models made with `ferry make-model` (a
// SentencePiece vocabulary with <s> and </s> but no <|im_start|> and no chat template, so the format is named with
// --chat-format): lines on standard input become turns whose prompts go in after what the cache holds, /exit and the
// end of input end the conversation, Ctrl-C stops an answer (during one) or quits (at the prompt), a conversation that
// outgrows the context ends with exit status 1, and every refusal names its cause (exit 2 for flags, checked before
// the model is loaded).
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

fs::path write_input(const fs::path& dir, const std::string& text) {
  const fs::path path = dir / "input.txt";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

Result chat(const std::vector<std::string>& args, const fs::path& dir, const std::string& input) {
  RunSpec spec;
  spec.stdin_path = write_input(dir, input).string();
  return run_ferry(args, dir, spec);
}

struct TurnLine {
  long long prompt_tokens, position, generated;
};

// The "turn N: P prompt tokens at position Q (...), G generated" lines of `chat -v`, in order.
std::vector<TurnLine> turn_lines(const std::string& err) {
  static const std::regex line(R"(turn (\d+): (\d+) prompt tokens at position (\d+) \([^)]*\), (\d+) generated)");
  std::vector<TurnLine> turns;
  for (std::sregex_iterator it(err.begin(), err.end(), line), end; it != end; ++it) {
    CHECK(std::stoll((*it)[1]) == static_cast<long long>(turns.size()) + 1);
    turns.push_back({std::stoll((*it)[2]), std::stoll((*it)[3]), std::stoll((*it)[4])});
  }
  return turns;
}

size_t count_ids(const std::string& ids_line) {
  std::istringstream in(ids_line);
  size_t n = 0;
  for (std::string id; in >> id;) ++n;
  return n;
}

}  // namespace

TEST_CASE("ferry chat: two lines on stdin are two turns; the second goes in right after what the first left") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  // -n 1: the answer's one token is sampled but never fed back, so the cache ends with the first turn's prompt and
  // the second turn must start exactly there (its text begins with the first turn's text).
  const std::vector<std::string> args = {"chat", model, "--chat-format", "llama2", "-n",
                                         "1",    "-v",  "--policy",      "cpu-all"};
  const Result r = chat(args, dir.path(), "Hello there\nAnd again\n");
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.err, "format llama2 (--chat-format llama2)"), r.err);
  const std::vector<TurnLine> turns = turn_lines(r.err);
  REQUIRE_MESSAGE(turns.size() == 2, r.err);
  // The first turn's prompt is the rendered conversation, token for token as `ferry tokenize` gives it.
  const Result ids =
      run_ferry({"tokenize", model, "--ids", "--no-bos", "-p", "<s>[INST] Hello there [/INST]"}, dir.path());
  REQUIRE_MESSAGE(ids.status == 0, ids.err);
  CHECK(turns[0].position == 0);
  CHECK(turns[0].prompt_tokens == static_cast<long long>(count_ids(ids.out)));
  CHECK(turns[0].generated == 1);
  CHECK(turns[1].position == turns[0].prompt_tokens);
  CHECK(turns[1].prompt_tokens > 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);  // one line per answer, no "> " (stdin is a file)
  CHECK_FALSE(contains(r.out, "> "));

  // Longer answers: the second turn still reuses at least the whole first prompt, and at most what was fed back.
  std::vector<std::string> longer = args;
  longer[5] = "4";
  const Result r4 = chat(longer, dir.path(), "Hello there\nAnd again\nA third\n");
  REQUIRE_MESSAGE(r4.status == 0, r4.err);
  const std::vector<TurnLine> t4 = turn_lines(r4.err);
  REQUIRE_MESSAGE(t4.size() == 3, r4.err);
  for (size_t i = 1; i < t4.size(); ++i) {
    CAPTURE(i);
    const long long cached = t4[i - 1].position + t4[i - 1].prompt_tokens + std::max(t4[i - 1].generated - 1, 0LL);
    CHECK(t4[i].position >= t4[i - 1].position + t4[i - 1].prompt_tokens);
    CHECK(t4[i].position <= cached);
  }
}

TEST_CASE("ferry chat: /exit and the end of input end the conversation; blank lines are skipped") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::vector<std::string> args = {"chat", model,      "--chat-format", "mistral",  "-n",       "2",
                                         "-v",   "--policy", "cpu-all",       "--system", "Be brief."};
  const Result r = chat(args, dir.path(), "Hi\n\n   \n/exit\nNever answered\n");
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK(turn_lines(r.err).size() == 1);
  const Result empty = chat(args, dir.path(), "");
  REQUIRE_MESSAGE(empty.status == 0, empty.err);
  CHECK(turn_lines(empty.err).empty());
  CHECK(empty.out.empty());
  // A last line without a line end is still a turn.
  const Result unterminated = chat(args, dir.path(), "Hi");
  REQUIRE_MESSAGE(unterminated.status == 0, unterminated.err);
  CHECK(turn_lines(unterminated.err).size() == 1);
}

TEST_CASE("ferry chat: a conversation that outgrows the context ends with exit 1, saying so") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const std::vector<std::string> args = {"chat",  model, "--chat-format", "llama2", "-n", "3",
                                         "--ctx", "40",  "--policy",      "cpu-all"};
  const Result r = chat(args, dir.path(),
                        "Hi\nthe quick brown fox jumps over the lazy dog, the quick brown fox jumps over the lazy dog, "
                        "the quick brown fox jumps over the lazy dog\n");
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "context holds 40"), r.err);
  CHECK_MESSAGE(contains(r.err, "does not drop history"), r.err);
  // An answer cut by the end of the context, likewise.
  const Result cut = chat({"chat", model, "--chat-format", "llama2", "-n", "100", "--ctx", "24", "--policy", "cpu-all"},
                          dir.path(), "Hi\n");
  CHECK(cut.status == 1);
  CHECK_MESSAGE(contains(cut.err, "context of 24 tokens is full"), cut.err);
}

TEST_CASE("ferry chat: flags are checked before the model is loaded; a model without a chat format is refused") {
  TempDir dir;
  const std::string missing = (dir.path() / "not_loaded.gguf").string();
  struct Case {
    std::vector<std::string> flags;
    std::vector<std::string> mentioned;
  };
  const std::vector<Case> cases = {
      {{"--chat-format", "vicuna"}, {"--chat-format", "'vicuna'", "chatml, llama2"}},
      {{"--chat-format", ""}, {"--chat-format"}},
      {{"--system", "\xC3("}, {"--system", "UTF-8"}},
      {{"--temp", "nan"}, {"--temp"}},
      {{"--seed", "-1"}, {"--seed"}},
      {{"--vram", "lots"}, {"--vram"}},
      {{"--policy", "nope"}, {"--policy"}},
      {{"-n", "0"}, {"-n"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"chat", missing};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const std::string command = command_line(args);
    CAPTURE(command);
    const Result r = chat(args, dir.path(), "Hi\n");
    CHECK(r.status == 2);
    for (const std::string& text : c.mentioned)
      CHECK_MESSAGE(contains(r.err, text), "missing '" << text << "': " << r.err);
    CHECK_FALSE(contains(r.err, "not_loaded.gguf"));
  }
  // No tokenizer.chat_template and no <|im_start|>: refused (bad input), suggesting --chat-format.
  const std::string model = make_tiny_model(dir.path()).string();
  const Result r = chat({"chat", model, "--policy", "cpu-all"}, dir.path(), "Hi\n");
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "no tokenizer.chat_template"), r.err);
  CHECK_MESSAGE(contains(r.err, "--chat-format"), r.err);
  // A format whose end-of-turn token the vocabulary lacks.
  const Result chatml = chat({"chat", model, "--chat-format", "chatml", "--policy", "cpu-all"}, dir.path(), "Hi\n");
  CHECK(chatml.status == 1);
  CHECK_MESSAGE(contains(chatml.err, "<|im_end|>"), chatml.err);
}

TEST_CASE("ferry run --chat answers the prompt as one user turn") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result r = run_ferry({"run", model, "--chat", "--chat-format", "llama2", "--system", "Be brief.", "-p", "Hello",
                              "-n", "3", "--policy", "cpu-all"},
                             dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK_FALSE(r.out.starts_with("Hello"));  // the answer, not the prompt continued
  CHECK_MESSAGE(contains(r.err, "chat format llama2"), r.err);
  const Result ids = run_ferry(
      {"tokenize", model, "--ids", "--no-bos", "-p", "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello [/INST]"},
      dir.path());
  REQUIRE(ids.status == 0);
  CHECK_MESSAGE(contains(r.err, "prompt:     " + std::to_string(count_ids(ids.out)) + " tokens"), r.err);
  // --system and --chat-format belong to --chat.
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--system", "x"}, std::vector<std::string>{"--chat-format", "llama2"}}) {
    std::vector<std::string> args = {"run", model, "-n", "1"};
    args.insert(args.end(), flags.begin(), flags.end());
    const Result bad = run_ferry(args, dir.path());
    CHECK(bad.status == 2);
    CHECK_MESSAGE(contains(bad.err, flags[0] + ": applies to a chat turn only"), bad.err);
  }
  const Result unknown = run_ferry({"run", model, "--chat", "--chat-format", "nope"}, dir.path());
  CHECK(unknown.status == 2);
  CHECK(contains(unknown.err, "'nope'"));
}

TEST_CASE("ferry chat: Ctrl-C at the prompt quits") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  RunningFerry ferry({"chat", model, "--chat-format", "llama2", "--policy", "cpu-all"}, dir.path());
  REQUIRE(ferry.wait_for([&] { return contains(ferry.err(), "ferry: chat with"); }, 120));
  // Repeated: one that lands just before the read starts is seen by the check before it, or the next interrupts it.
  for (int i = 0; i < 100 && !ferry.finished(); ++i) {
    ferry.signal(SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(ferry.finished());  // by Ctrl-C, before its input ends
  const Result r = ferry.wait(30);
  CHECK(r.status == 0);
  CHECK(r.signal == 0);
  CHECK(r.out.empty());
}

TEST_CASE("ferry chat: Ctrl-C during an answer stops it; the conversation goes on") {
  TempDir dir;
  // A larger model than tiny, so an answer of 500 tokens takes long enough to be interrupted part-way.
  const fs::path path = dir.path() / "model.gguf";
  const Result made =
      run_ferry({"make-model", "--preset", "small", "--type", "q8_0", "--seed", "5", "-o", path.string()}, dir.path());
  REQUIRE_MESSAGE(made.status == 0, made.err);
  // (A large context: the synthetic vocabulary's filler tokens take several tokens each when the answer is encoded
  // again for the next turn.)
  RunningFerry ferry({"chat", path.string(), "--chat-format", "llama2", "-n", "500", "-v", "--policy", "cpu-all",
                      "--ctx", "4096", "--force-ctx"},
                     dir.path());
  ferry.write_stdin("Tell me everything\n");
  REQUIRE(ferry.wait_for([&] { return !ferry.out().empty(); }, 120));  // the answer has begun
  ferry.signal(SIGINT);
  REQUIRE_MESSAGE(ferry.wait_for([&] { return contains(ferry.err(), "answer stopped"); }, 60),
                  ferry.err() << "\nstdout: " << ferry.out());
  ferry.write_stdin("Go on\n");
  const Result r = ferry.wait(120);
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const std::vector<TurnLine> turns = turn_lines(r.err);
  REQUIRE_MESSAGE(turns.size() == 2, r.err);
  CHECK(turns[0].generated < 500);
  CHECK(contains(r.err, "stopped by Ctrl-C"));
  // The partial answer stayed in the conversation: the second turn goes in after the first prompt at least.
  CHECK(turns[1].position >= turns[0].prompt_tokens);
}
