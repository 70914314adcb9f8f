#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/sampler.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

using ferry::Sampler;
using ferry::SamplerConfig;

TEST_CASE("greedy picks the first maximum and never a NaN") {
  Sampler s(SamplerConfig{});
  std::vector<float> logits = ferry::test::random_floats(1000, ferry::test::test_seed(7));
  logits[417] = 5.0f;
  logits[900] = 5.0f;
  CHECK(s.sample(logits) == 417);
  logits[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK(s.sample(logits) == 417);
  std::vector<float> nans(4, std::numeric_limits<float>::quiet_NaN());
  CHECK_THROWS_AS(s.sample(nans), ferry::Error);
  CHECK_THROWS_AS(s.sample(std::vector<float>{}), ferry::Error);
}

TEST_CASE("a seed makes sampling reproducible; top_k = 1 is greedy") {
  const auto logits = ferry::test::random_floats(500, ferry::test::test_seed(11), -3.0f, 3.0f);
  SamplerConfig cfg{1.0f, 0, 1.0f, 42};
  Sampler a(cfg), b(cfg);
  std::vector<int32_t> sa, sb;
  for (int i = 0; i < 50; ++i) {
    sa.push_back(a.sample(logits));
    sb.push_back(b.sample(logits));
  }
  CHECK(sa == sb);
  cfg.seed = ferry::test::test_seed(43);
  Sampler c(cfg);
  std::vector<int32_t> sc;
  for (int i = 0; i < 50; ++i) sc.push_back(c.sample(logits));
  CHECK(sa != sc);
  Sampler greedy(SamplerConfig{}), k1(SamplerConfig{0.8f, 1, 1.0f, 5});
  CHECK(k1.sample(logits) == greedy.sample(logits));
}

TEST_CASE("temperature sampling follows the softmax; top-p keeps the nucleus only") {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  Sampler s(SamplerConfig{1.0f, 0, 1.0f, 123});
  std::vector<int> counts(4, 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[s.sample(logits)]++;
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int i = 0; i < 4; ++i) {
    const double p = std::exp(logits[i]) / z;
    const double sigma = std::sqrt(p * (1 - p) / n);
    CHECK(std::abs(counts[i] / double(n) - p) < 5 * sigma);  // 5 sigma: a false failure is ~1e-6 likely
  }
  // softmax probabilities are ~0.23, 0.63, 0.14, 0.03: top_p 0.6 keeps token 1 only, top_p 0.8 tokens 1 and 0
  Sampler nucleus(SamplerConfig{1.0f, 0, 0.6f, 9});
  for (int i = 0; i < 200; ++i) CHECK(nucleus.sample(logits) == 1);
  Sampler nucleus2(SamplerConfig{1.0f, 0, 0.8f, 9});
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 2000; ++i) seen[nucleus2.sample(logits)]++;
  CHECK(seen[0] > 0);
  CHECK(seen[1] > 0);
  CHECK(seen[2] == 0);
  CHECK(seen[3] == 0);
}

TEST_CASE("temperature scales the logits before the softmax; top_k keeps the k largest, renormalised") {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  const int n = 40000;
  for (float temperature : {0.5f, 2.0f}) {
    CAPTURE(temperature);
    Sampler s(SamplerConfig{temperature, 0, 1.0f, 321});
    std::vector<int> counts(4, 0);
    for (int i = 0; i < n; ++i) counts[s.sample(logits)]++;
    double z = 0;
    for (float l : logits) z += std::exp(l / temperature);
    for (int i = 0; i < 4; ++i) {
      const double p = std::exp(logits[i] / temperature) / z;
      const double sigma = std::sqrt(p * (1 - p) / n);
      CHECK(std::abs(counts[i] / double(n) - p) < 5 * sigma + 1e-4);
    }
  }
  // top_k = 2 keeps tokens 1 and 0, in proportion e^2 : e^1 (p(0) = 1 / (1 + e) ~ 0.269).
  Sampler k2(SamplerConfig{1.0f, 2, 1.0f, 77});
  std::vector<int> counts(4, 0);
  for (int i = 0; i < n; ++i) counts[k2.sample(logits)]++;
  CHECK(counts[2] == 0);
  CHECK(counts[3] == 0);
  const double p0 = 1.0 / (1.0 + std::exp(1.0));
  CHECK(std::abs(counts[0] / double(n) - p0) < 5 * std::sqrt(p0 * (1 - p0) / n));
}

TEST_CASE("bad sampler settings are refused") {
  CHECK_THROWS_AS(Sampler(SamplerConfig{-0.5f, 40, 0.9f, 0}), ferry::Error);
  CHECK_THROWS_AS(Sampler(SamplerConfig{1.0f, 40, 0.0f, 0}), ferry::Error);
  CHECK_THROWS_AS(Sampler(SamplerConfig{1.0f, 40, 1.5f, 0}), ferry::Error);
}

TEST_CASE("top-p: a nucleus whose mass reaches top_p exactly stops there") {
  // Equal logits give each token a mass of exactly 1/n (exp(0) = 1, and 1/4 is a binary fraction), so the running
  // mass hits top_p on the nose; logits log(0.5), log(0.25)... would not (log and exp round), and the test would not
  // know which side of the boundary it is on. Ties are ordered by token id, so the nucleus is a prefix of the ids.
  // The nucleus is the smallest prefix with mass >= top_p: 0.5 keeps tokens 0 and 1; a top_p just above 0.5 also
  // keeps token 2; 0.75 keeps 0, 1 and 2 but never 3.
  const std::vector<float> logits = {0.3f, 0.3f, 0.3f, 0.3f};
  struct Case {
    float top_p;
    std::vector<bool> allowed;
  };
  for (const Case& c :
       {Case{0.5f, {true, true, false, false}}, Case{std::nextafter(0.5f, 1.0f), {true, true, true, false}},
        Case{0.75f, {true, true, true, false}}, Case{0.25f, {true, false, false, false}}}) {
    CAPTURE(c.top_p);
    for (const float temperature : {1.0f, 0.7f}) {
      CAPTURE(temperature);
      std::vector<int> seen(4, 0);
      for (uint64_t seed = 0; seed < 200; ++seed) {  // many generators, several draws each
        Sampler s(SamplerConfig{temperature, 0, c.top_p, seed});
        for (int i = 0; i < 10; ++i) seen[s.sample(logits)]++;
      }
      for (int t = 0; t < 4; ++t) {
        CAPTURE(t);
        if (c.allowed[t])
          CHECK(seen[t] > 0);  // each allowed token has probability >= 1/3 per draw: 2000 draws never miss it
        else
          CHECK(seen[t] == 0);
      }
    }
  }
}
