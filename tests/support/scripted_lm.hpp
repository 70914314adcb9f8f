// A CausalLm for tests of the generation loop and of chat sessions: its k-th forward call returns logits (random, from
// a fixed seed) whose maximum is at script[k], so greedy sampling reads the script back. It records every call and
// keeps the tokens its cache would hold, position by position, refusing positions beyond its context or a call that
// would leave a hole in the cache.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "ferry/text/generate.hpp"
#include "support/random.hpp"

namespace ferry::test {

class ScriptedLm : public CausalLm {
 public:
  struct Call {
    std::vector<int32_t> tokens;
    int64_t pos0;
  };

  ScriptedLm(std::vector<int32_t> script, int64_t n_ctx, int64_t n_vocab)
      : m_script(std::move(script)), m_n_ctx(n_ctx), m_n_vocab(n_vocab) {}
  int64_t n_ctx() const noexcept override { return m_n_ctx; }
  int64_t n_vocab() const noexcept override { return m_n_vocab; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override {
    REQUIRE_FALSE(all_logits);
    REQUIRE(logits.size() == static_cast<size_t>(m_n_vocab));
    REQUIRE(pos0 >= 0);
    REQUIRE(pos0 + static_cast<int64_t>(tokens.size()) <= m_n_ctx);
    REQUIRE(static_cast<size_t>(pos0) <= m_cache.size());  // every position before pos0 was evaluated
    REQUIRE(m_calls.size() < m_script.size());             // more logits asked for than the script has
    const std::vector<float> noise = random_floats(static_cast<size_t>(m_n_vocab), 1000 + m_calls.size(), -2.0f, 2.0f);
    std::copy(noise.begin(), noise.end(), logits.begin());
    logits[static_cast<size_t>(m_script[m_calls.size()])] = 3.0f;
    m_calls.push_back({std::vector<int32_t>(tokens.begin(), tokens.end()), pos0});
    m_cache.resize(static_cast<size_t>(pos0));
    m_cache.insert(m_cache.end(), tokens.begin(), tokens.end());
  }
  const std::vector<Call>& calls() const { return m_calls; }
  // The tokens at positions 0 .. the end of the last call, as the calls wrote them (what a later call may attend to).
  const std::vector<int32_t>& cache() const { return m_cache; }

 private:
  std::vector<int32_t> m_script;
  int64_t m_n_ctx;
  int64_t m_n_vocab;
  std::vector<Call> m_calls;
  std::vector<int32_t> m_cache;
};

}  // namespace ferry::test
