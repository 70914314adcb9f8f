#include "serve_engine.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>

#include "ferry/text/tokenizer.hpp"
#include "ferry/text/utf8_stream.hpp"

namespace ferry::serve {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The length of the longest suffix of `text` that begins one of `stops` (a stop sequence that may be completing):
// that much of the text is held back until the next token decides.
size_t stop_prefix_tail(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  return hold;
}

}  // namespace

JobUpdate Job::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(m_mutex);
  m_cv.wait_for(lock, timeout, [this] { return !m_pending.empty() || m_done; });
  JobUpdate u;
  u.text = std::move(m_pending);
  m_pending.clear();
  if (m_done) {
    u.done = true;
    u.finish = m_finish;
    u.usage = m_usage;
    u.error = m_error;
  }
  return u;
}

void Job::push(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(m_mutex);
    m_pending += text;
  }
  m_cv.notify_all();
}

void Job::finish(FinishReason reason, const Usage& usage, const std::string& error) {
  {
    std::lock_guard lock(m_mutex);
    m_done = true;
    m_finish = reason;
    m_usage = usage;
    m_error = error;
  }
  m_cv.notify_all();
}

struct Engine::Slot {
  bool busy = false;
  Pending p;
  std::optional<Sampler> sampler;
  int64_t n_prefilled = 0;  // prompt tokens in the cache
  int64_t n_past = 0;       // positions the cache holds
  bool has_next = false;    // `next` was sampled and goes in at n_past next step
  int32_t next = 0;
  int64_t generated = 0;
  Utf8Stream utf8;
  std::string text;  // the answer so far, whole characters, stop sequences cut
  size_t emitted = 0;
  Clock::time_point admitted, first_token;
};

Engine::Engine(BatchedLm& model, const Tokenizer& tokenizer, EngineOptions options)
    : m_model(model), m_tokenizer(tokenizer), m_options(options) {
  m_options.prefill_chunk = std::max<int64_t>(1, m_options.prefill_chunk);
}

std::shared_ptr<Job> Engine::submit(GenerationRequest request) {
  const auto n_prompt = static_cast<int64_t>(request.prompt.size());
  if (n_prompt < 1) bad_request("invalid_value", "the prompt is empty");
  if (n_prompt + 1 > m_model.n_ctx())
    throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                   "the prompt is " + std::to_string(n_prompt) + " tokens long; this server's context holds " +
                       std::to_string(m_model.n_ctx()) + " tokens, with room for at least one token of answer");
  auto job = std::make_shared<Job>();
  {
    std::lock_guard lock(m_mutex);
    if (m_shutdown) throw ApiError(503, "server_error", "shutting_down", "the server is shutting down");
    if (m_queue.size() >= m_options.max_queue)
      throw ApiError(
          503, "server_error", "overloaded",
          "the server's queue is full (" + std::to_string(m_options.max_queue) + " requests waiting); try again later");
    m_queue.push_back({job, std::move(request), Clock::now(), m_next_id++});
    m_metrics.queued = static_cast<int64_t>(m_queue.size());
  }
  m_cv.notify_all();
  return job;
}

void Engine::shutdown() {
  {
    std::lock_guard lock(m_mutex);
    m_shutdown = true;
  }
  m_cv.notify_all();
}

EngineMetrics Engine::metrics() const {
  std::lock_guard lock(m_mutex);
  return m_metrics;
}

void Engine::admit(std::vector<Slot>& slots) {
  std::lock_guard lock(m_mutex);
  for (Slot& slot : slots) {
    if (slot.busy) continue;
    while (!m_queue.empty() && m_queue.front().job->cancelled()) {  // gone before it started
      ++m_metrics.requests_cancelled;
      m_queue.front().job->finish(FinishReason::STOP, {});
      m_queue.pop_front();
    }
    if (m_queue.empty()) break;
    Pending p = std::move(m_queue.front());
    m_queue.pop_front();
    try {
      slot.sampler.emplace(p.request.sampler);
    } catch (const std::exception& e) {  // the HTTP side validated the settings; this is a bug, not a crash
      ++m_metrics.requests_failed;
      p.job->finish(FinishReason::STOP, {}, e.what());
      continue;
    }
    slot.busy = true;
    slot.p = std::move(p);
    slot.n_prefilled = slot.n_past = slot.generated = 0;
    slot.has_next = false;
    slot.utf8 = Utf8Stream();
    slot.text.clear();
    slot.emitted = 0;
    slot.admitted = Clock::now();
  }
  m_metrics.queued = static_cast<int64_t>(m_queue.size());
  m_metrics.active = std::count_if(slots.begin(), slots.end(), [](const Slot& s) { return s.busy; });
}

void Engine::emit(Slot& slot, bool final) {
  if (slot.p.request.trim_leading_space && slot.emitted == 0) {
    const size_t first = slot.text.find_first_not_of(' ');
    slot.text.erase(0, first == std::string::npos ? slot.text.size() : first);
  }
  const size_t upto = final ? slot.text.size() : slot.text.size() - stop_prefix_tail(slot.text, slot.p.request.stop);
  if (upto <= slot.emitted) return;
  slot.p.job->push(slot.text.substr(slot.emitted, upto - slot.emitted));
  slot.emitted = upto;
}

void Engine::finish(Slot& slot, FinishReason reason) {
  emit(slot, true);
  const auto n_prompt = static_cast<int64_t>(slot.p.request.prompt.size());
  {  // counted before the job ends, so whoever sees the end sees it counted
    std::lock_guard lock(m_mutex);
    ++m_metrics.requests_finished;
    m_metrics.prompt_tokens += static_cast<uint64_t>(n_prompt);
    m_metrics.generated_tokens += static_cast<uint64_t>(slot.generated);
  }
  slot.p.job->finish(reason, Usage{n_prompt, slot.generated});
  const Clock::time_point now = Clock::now();
  if (m_options.log) {
    const double prompt_s = seconds(slot.admitted, slot.first_token), gen_s = seconds(slot.first_token, now);
    std::fprintf(stderr,
                 "ferry serve: request %llu (%s): %lld prompt tokens in %.3f s, %lld generated in %.3f s (%.1f "
                 "tokens/s), finish %s, waited %.3f s\n",
                 static_cast<unsigned long long>(slot.p.id), slot.p.request.label.c_str(),
                 static_cast<long long>(n_prompt), prompt_s, static_cast<long long>(slot.generated), gen_s,
                 gen_s > 0 ? static_cast<double>(slot.generated) / gen_s : 0.0,
                 std::string(finish_reason_name(reason)).c_str(), seconds(slot.p.submitted, slot.admitted));
  }
  slot.busy = false;
  slot.p = Pending{};
}

void Engine::sample_into(Slot& slot, std::span<const float> logits) {
  if (slot.generated == 0) slot.first_token = Clock::now();
  const GenerationRequest& r = slot.p.request;
  const int32_t token = slot.sampler->sample(logits);
  if (!r.ignore_eos && (token == m_tokenizer.eos() ||
                        std::find(r.stop_tokens.begin(), r.stop_tokens.end(), token) != r.stop_tokens.end())) {
    slot.text += slot.utf8.flush();
    finish(slot, FinishReason::STOP);
    return;
  }
  ++slot.generated;
  slot.text += slot.utf8.push(m_tokenizer.token_to_piece(token));
  // The earliest stop sequence ends the text (searched from where a new match could begin).
  size_t cut = std::string::npos;
  for (const std::string& s : r.stop) cut = std::min(cut, slot.text.find(s));
  if (cut != std::string::npos) {
    slot.text.resize(cut);
    finish(slot, FinishReason::STOP);
    return;
  }
  if (slot.generated >= r.max_tokens || slot.n_past >= m_model.n_ctx()) {  // no room to feed the token back
    slot.text += slot.utf8.flush();
    finish(slot, FinishReason::LENGTH);
    return;
  }
  slot.next = token;
  slot.has_next = true;
  emit(slot, false);
}

void Engine::run() {
  const int64_t n_seq = m_model.n_seq(), n_vocab = m_model.n_vocab();
  std::vector<Slot> slots(static_cast<size_t>(n_seq));
  std::vector<float> logits(static_cast<size_t>(n_seq * n_vocab));
  std::vector<SequenceChunk> chunks;
  std::vector<size_t> chunk_slot;
  std::vector<size_t> order;  // prefilling slots, oldest first
  auto idle = [&] { return std::none_of(slots.begin(), slots.end(), [](const Slot& s) { return s.busy; }); };
  for (;;) {
    {
      std::unique_lock lock(m_mutex);
      m_cv.wait(lock, [&] { return !m_queue.empty() || !idle() || m_shutdown; });
      if (m_shutdown && m_queue.empty() && idle()) return;
    }
    for (Slot& slot : slots)
      if (slot.busy && slot.p.job->cancelled()) {
        {
          std::lock_guard lock(m_mutex);
          ++m_metrics.requests_cancelled;
        }
        slot.p.job->finish(FinishReason::STOP, {});
        if (m_options.log)
          std::fprintf(stderr, "ferry serve: request %llu (%s): cancelled after %lld tokens (client gone)\n",
                       static_cast<unsigned long long>(slot.p.id), slot.p.request.label.c_str(),
                       static_cast<long long>(slot.generated));
        slot.busy = false;
        slot.p = Pending{};
      }
    admit(slots);

    chunks.clear();
    chunk_slot.clear();
    order.clear();
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (!s.busy) continue;
      if (s.has_next) {
        chunks.push_back({static_cast<int64_t>(i), s.n_past, std::span<const int32_t>(&s.next, 1), true});
        chunk_slot.push_back(i);
      } else {
        order.push_back(i);
      }
    }
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return slots[a].p.id < slots[b].p.id; });
    int64_t budget = m_model.max_step_tokens() - static_cast<int64_t>(chunks.size());
    for (size_t i : order) {
      if (budget <= 0) break;
      Slot& s = slots[i];
      const auto& prompt = s.p.request.prompt;
      const int64_t left = static_cast<int64_t>(prompt.size()) - s.n_prefilled;
      const int64_t n = std::min({left, budget, m_options.prefill_chunk});
      chunks.push_back({static_cast<int64_t>(i), s.n_past,
                        std::span<const int32_t>(prompt.data() + s.n_prefilled, static_cast<size_t>(n)), n == left});
      chunk_slot.push_back(i);
      budget -= n;
    }
    if (chunks.empty()) continue;

    const Clock::time_point begin = Clock::now();
    try {
      m_model.forward_sequences(chunks, logits);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ferry serve: a step failed: %s\n", e.what());
      for (size_t i : chunk_slot) {
        Slot& s = slots[i];
        {
          std::lock_guard lock(m_mutex);
          ++m_metrics.requests_failed;
        }
        s.p.job->finish(FinishReason::STOP, Usage{}, e.what());
        s.busy = false;
        s.p = Pending{};
      }
      continue;
    }
    int64_t step_tokens = 0;
    size_t row = 0;
    for (size_t c = 0; c < chunks.size(); ++c) {
      Slot& s = slots[chunk_slot[c]];
      const auto n = static_cast<int64_t>(chunks[c].tokens.size());
      step_tokens += n;
      s.n_past += n;
      if (s.has_next) {
        s.has_next = false;
      } else {
        s.n_prefilled += n;
      }
      if (!chunks[c].want_logits) continue;
      const std::span<const float> row_logits(logits.data() + row * n_vocab, static_cast<size_t>(n_vocab));
      ++row;
      try {
        sample_into(s, row_logits);
      } catch (const std::exception& e) {  // logits with no finite value: a broken model, reported, not a crash
        {
          std::lock_guard lock(m_mutex);
          ++m_metrics.requests_failed;
        }
        s.p.job->finish(FinishReason::STOP, Usage{}, e.what());
        s.busy = false;
        s.p = Pending{};
      }
    }
    std::lock_guard lock(m_mutex);
    ++m_metrics.steps;
    m_metrics.step_tokens += static_cast<uint64_t>(step_tokens);
    m_metrics.busy_seconds += seconds(begin, Clock::now());
    m_metrics.active = std::count_if(slots.begin(), slots.end(), [](const Slot& s) { return s.busy; });
  }
}

}  // namespace ferry::serve
