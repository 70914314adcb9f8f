// A float64 scalar implementation of the llama forward pass (and of its qwen2 and qwen3 variants), written
// independently of the kernels: the oracle for the CPU and GPU forward passes. Weights are dequantized with
// ref::dequantize; everything else is plain double math.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "ferry/models/llama/model.hpp"
#include "ferry/models/llama/runner.hpp"

namespace ferry::test {

// Logits [tokens.size(), n_vocab] for a fresh sequence starting at position 0 (K/V rounded to FP16 as the cache
// format does, so the comparison measures kernel error, not the cache format).
std::vector<double> llama_reference_logits(const LlamaConfig& c, const LlamaWeights& w,
                                           const std::vector<int32_t>& tokens);

// A runner with every layer on the CPU, a cache of n_ctx positions, prompts in chunks of `chunk` tokens and every
// token's logits available: what the tests compare with the float64 reference.
inline LlamaRunnerOptions cpu_runner_options(int64_t n_ctx, int64_t chunk) {
  LlamaRunnerOptions o;
  o.n_ctx = n_ctx;
  o.max_tokens = chunk;
  o.policy = Policy::CPU_ALL;
  o.all_logits = true;
  return o;
}

// Relative RMS error of logits `a` against the reference `b`: |a - b| / |b| over all of them.
inline double relative_error(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

}  // namespace ferry::test
