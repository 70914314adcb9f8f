// A float64 scalar implementation of the llama forward pass, written independently of the kernels: the oracle for
// the CPU and GPU forward passes. Weights are dequantized with ref::dequantize; everything else is plain double math.
#pragma once

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

}  // namespace ferry::test
