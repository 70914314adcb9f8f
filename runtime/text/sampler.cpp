#include "ferry/text/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "ferry/error.hpp"

namespace ferry {

Sampler::Sampler(const SamplerConfig& config) : m_config(config), m_rng(config.seed) {
  if (!(config.temperature >= 0.0f))
    fail(ErrorCategory::INVALID_ARGUMENT, "temperature must be >= 0, got " + std::to_string(config.temperature));
  if (!(config.top_p > 0.0f && config.top_p <= 1.0f))
    fail(ErrorCategory::INVALID_ARGUMENT, "top-p must be in (0, 1], got " + std::to_string(config.top_p));
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) fail(ErrorCategory::INVALID_ARGUMENT, "sampler: no logits");
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isfinite(logits[i]) && (best < 0 || logits[i] > logits[best])) best = static_cast<int32_t>(i);
  if (best < 0) fail(ErrorCategory::INVALID_ARGUMENT, "sampler: no finite logit among " + std::to_string(logits.size()));
  if (m_config.temperature == 0.0f) return best;

  m_candidates.clear();
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isfinite(logits[i])) m_candidates.emplace_back(logits[i], static_cast<int32_t>(i));
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = m_candidates.size();
  if (m_config.top_k > 0) keep = std::min(keep, static_cast<size_t>(m_config.top_k));
  std::partial_sort(m_candidates.begin(), m_candidates.begin() + static_cast<std::ptrdiff_t>(keep), m_candidates.end(),
                    by_logit);
  m_candidates.resize(keep);

  // softmax at temperature, in double so a long tail does not lose mass
  const double max_logit = m_candidates.front().first;
  std::vector<double> probs(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    probs[i] = std::exp((m_candidates[i].first - max_logit) / m_config.temperature);
    total += probs[i];
  }
  // nucleus: the smallest prefix whose mass reaches top_p
  size_t nucleus = keep;
  if (m_config.top_p < 1.0f) {
    double mass = 0.0;
    for (size_t i = 0; i < keep; ++i) {
      mass += probs[i] / total;
      if (mass >= m_config.top_p) {
        nucleus = i + 1;
        break;
      }
    }
  }
  double nucleus_total = 0.0;
  for (size_t i = 0; i < nucleus; ++i) nucleus_total += probs[i];
  std::uniform_real_distribution<double> uniform(0.0, nucleus_total);
  const double target = uniform(m_rng);
  double acc = 0.0;
  for (size_t i = 0; i < nucleus; ++i) {
    acc += probs[i];
    if (target < acc) return m_candidates[i].second;
  }
  return m_candidates[nucleus - 1].second;
}

}  // namespace ferry
