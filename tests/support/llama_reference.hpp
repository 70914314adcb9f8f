// A float64 scalar implementation of the llama forward pass, written independently of the kernels: the oracle for
// the CPU and GPU forward passes. Weights are dequantized with ref::dequantize; everything else is plain double math.
#pragma once

#include <cstdint>
#include <vector>

#include "ferry/llama_model.hpp"

namespace ferry::test {

// Logits [tokens.size(), n_vocab] for a fresh sequence starting at position 0 (K/V rounded to FP16 as the cache
// format does, so the comparison measures kernel error, not the cache format).
std::vector<double> llama_reference_logits(const LlamaConfig& c, const LlamaWeights& w,
                                           const std::vector<int32_t>& tokens);

}  // namespace ferry::test
