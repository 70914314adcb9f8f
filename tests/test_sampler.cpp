#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/sampler.hpp"
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
