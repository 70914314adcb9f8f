// The server's generation engine: up to n_seq requests decoded together, each in its own KV cache, in steps that read
// every weight once for all of them (LlamaRunner::forward_sequences); the rest wait in a bounded queue.
//
// One thread (run()) owns the model. Each step it
//   1. drops the requests whose client went away (Job::cancel) and admits queued ones into free slots;
//   2. gives every decoding request its one token (the one sampled last step), then fills what is left of the step
//      (max_step_tokens) with prompt chunks of the requests still reading their prompts, at most prefill_chunk tokens
//      each, oldest first: a long prompt is read over several steps, and the requests already answering get a token
//      every step meanwhile (chunked prefill);
//   3. samples a token for each request whose logits came out, and hands its text to the request's Job.
//
//   step:   [ d0 d1 d2 | p3 p3 p3 p3 ... ]   d: one decode token per answering slot, p: a chunk of slot 3's prompt
//
// The HTTP threads only submit jobs and read their text (Job::wait); nothing they do blocks a step.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ferry/models/llama/runner.hpp"
#include "ferry/text/sampler.hpp"
#include "serve_api.hpp"

namespace ferry {
class Tokenizer;
}

namespace ferry::serve {

// What the engine drives: several sequences in one step (LlamaRunner; a test may supply its own).
class BatchedLm {
 public:
  virtual ~BatchedLm() = default;
  virtual int64_t n_ctx() const noexcept = 0;
  virtual int64_t n_vocab() const noexcept = 0;
  virtual int64_t n_seq() const noexcept = 0;
  virtual int64_t max_step_tokens() const noexcept = 0;
  // LlamaRunner::forward_sequences' contract.
  virtual void forward_sequences(std::span<const SequenceChunk> chunks, std::span<float> logits) = 0;
};

class RunnerLm final : public BatchedLm {
 public:
  explicit RunnerLm(LlamaRunner& runner) : m_runner(runner) {}
  int64_t n_ctx() const noexcept override { return m_runner.n_ctx(); }
  int64_t n_vocab() const noexcept override { return m_runner.n_vocab(); }
  int64_t n_seq() const noexcept override { return m_runner.n_seq(); }
  int64_t max_step_tokens() const noexcept override { return m_runner.max_step_tokens(); }
  void forward_sequences(std::span<const SequenceChunk> chunks, std::span<float> logits) override {
    m_runner.forward_sequences(chunks, logits);
  }

 private:
  LlamaRunner& m_runner;
};

struct GenerationRequest {
  std::vector<int32_t> prompt;  // tokenized, BOS included where the model wants one
  int64_t max_tokens = 16;      // at most this many tokens (the context may end it sooner)
  SamplerConfig sampler;
  std::vector<int32_t> stop_tokens;  // besides EOS (a chat format's end of turn)
  std::vector<std::string> stop;     // stop sequences: the text ends before the first one
  bool trim_leading_space = false;   // an answer's first token's space (SentencePiece's "▁Hello") is not text
  bool ignore_eos = false;           // EOS and stop_tokens do not end the answer (benchmarks)
  std::string label;                 // for the log line: "chat", "completion"
};

// A request's progress as its HTTP thread sees it.
struct JobUpdate {
  std::string text;  // new text since the last update (always whole UTF-8 characters)
  bool done = false;
  FinishReason finish = FinishReason::STOP;
  Usage usage;
  std::string error;  // the step failed (done is set)
};

class Job {
 public:
  // Waits up to `timeout` for new text or the end; returns what came (possibly nothing).
  JobUpdate wait(std::chrono::milliseconds timeout);
  // The client went away: the engine drops the request at its next step and frees its slot.
  void cancel() noexcept { m_cancelled.store(true); }
  bool cancelled() const noexcept { return m_cancelled.load(); }

 private:
  friend class Engine;
  void push(const std::string& text);
  void finish(FinishReason reason, const Usage& usage, const std::string& error = {});

  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::string m_pending;
  bool m_done = false;
  FinishReason m_finish = FinishReason::STOP;
  Usage m_usage;
  std::string m_error;
  std::atomic<bool> m_cancelled{false};
};

struct EngineOptions {
  int64_t prefill_chunk = 128;  // the most prompt tokens of one request per step
  size_t max_queue = 64;        // waiting requests beyond the slots; more: 503
  bool log = true;              // a line per request on stderr
};

// Counters for GET /metrics (monotone, except the gauges active and queued).
struct EngineMetrics {
  uint64_t requests_finished = 0;
  uint64_t requests_cancelled = 0;
  uint64_t requests_failed = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t steps = 0;
  uint64_t step_tokens = 0;
  double busy_seconds = 0;
  int64_t active = 0;
  int64_t queued = 0;
};

class Engine {
 public:
  Engine(BatchedLm& model, const Tokenizer& tokenizer, EngineOptions options);
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. ApiError 503 when the queue is full or the engine is shutting down; 400 when the prompt does
  // not fit the context with one token of answer.
  std::shared_ptr<Job> submit(GenerationRequest request);
  // The engine loop: returns once shutdown() was called and every admitted and queued request has finished.
  void run();
  // Stops taking requests; run() finishes those in flight and queued, then returns.
  void shutdown();
  EngineMetrics metrics() const;

 private:
  struct Pending {
    std::shared_ptr<Job> job;
    GenerationRequest request;
    std::chrono::steady_clock::time_point submitted;
    uint64_t id = 0;
  };
  struct Slot;

  void admit(std::vector<Slot>& slots);
  void sample_into(Slot& slot, std::span<const float> logits);
  void finish(Slot& slot, FinishReason reason);
  void emit(Slot& slot, bool final);

  BatchedLm& m_model;
  const Tokenizer& m_tokenizer;
  EngineOptions m_options;
  mutable std::mutex m_mutex;
  std::condition_variable m_cv;
  std::deque<Pending> m_queue;
  bool m_shutdown = false;
  uint64_t m_next_id = 1;
  EngineMetrics m_metrics;
};

}  // namespace ferry::serve
