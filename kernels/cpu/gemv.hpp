// The CPU GEMV path (n_tokens <= kCpuGemvMaxTokens): internal interface between matmul.cpp and the per-ISA kernels.
//
// Roofline: at T tokens a weight byte feeds ~2T/bytes_per_weight FLOPs (Q4_0: 0.56 B/weight, so T = 1 is ~3.6
// FLOP/byte), far below what a core computes per byte of DRAM bandwidth, so GEMV is memory-bound once the per-byte
// instruction count is small: the kernel must read each weight byte exactly once and spend only a few instructions per
// 32 weights. Technique:
//  - The activations are quantized once per call to int8 blocks of 32 (Q8Block: float scale d = max|x| / 127,
//    round-to-nearest-even, plus the integer sum of each 16-element half). Every quantized weight type is then an
//    integer code u (int8 range) times per-16/32-element integer scales, so a block's dot product is an exact int32
//    sum (maddubs/madd on AVX2) scaled once in float: d_w * d_x * isum, minus the type's offset/min term.
//  - Token loop innermost: a weight block is decoded into registers once and dotted with the T <= 8 activation rows.
//  - Parallel over output rows with oneTBB (matmul.cpp); each row is one call.
// Compute rate of the AVX2 variant, one core, T = 1, weights resident in L2 (AMD EPYC Zen 4, thread CPU time):
// Q4_0 13.7, Q4_K 10.7, Q6_K 14.0, Q8_0 30, F16 31 GB/s of weights, about one 32-weight block per 4 cycles (bound by
// vector-ALU throughput, not latency). A GEMV is memory-bound once cores x this rate exceeds the DRAM read rate.
// Weights come from DRAM in a decode step, and a core's hardware prefetchers alone left the decoding loop waiting:
// the AVX2 row loops prefetch 4 KiB ahead in software. bench_cpu_gemv (cold weights, Xeon with AVX-512, 2 cores):
// one thread Q4_0 3.7-4.1 -> 9.0-12.0 GB/s, Q4_K 4.4-4.9 -> 9.3-9.5, Q6_K 5.6-5.9 -> 8.3-10.6, Q8_0 7.5 -> 9.5-11.0;
// two threads Q4_0 7.3-8.0 -> 18.9-20.7 GB/s (79-86% of the measured read bandwidth), Q4_K 9.7-10.1 -> 18.8-19.0,
// Q8_0 14.6 -> 20.9-21.9.
// Extra error from the int8 activations (the only approximation; the weights are used exactly): each activation is
// off by at most d_x / 2 = max|x_block| / 254, a uniform rounding error of variance d_x^2 / 12. For random weights the
// output's normalised error mse / mean-square is about E[d_x^2] / (12 E[x^2]): 1.5e-5 for uniform x, 3e-5 for Gaussian
// x (block max ~2.3 sigma). Float types (F32/F16/BF16) use the float activations directly and add only float32
// accumulation error. Non-finite activations make the whole block's scale NaN, so they surface as NaN outputs.
// Not a public header.
#pragma once

#include <array>
#include <cstdint>
#include <utility>

#include "ferry/ggml_type.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "isa.hpp"

namespace ferry::cpu::detail {

inline constexpr int kQ8BlockSize = 32;

// One block of 32 quantized activations. x[i] ~= d * qs[i]; sum[h] = qs[16h] + ... + qs[16h + 15];
// ds = d * (sum[0] + sum[1]), the block's sum of x as the kernels see it (the min/offset terms of affine types).
struct Q8Block {
  float d;
  float ds;
  int16_t sum[2];
  int8_t qs[kQ8BlockSize];
};
static_assert(sizeof(Q8Block) == 44);

// Quantizes rows [n_tokens, n_cols] (n_cols a multiple of 32) to n_tokens * n_cols / 32 blocks, token-major.
void quantize_activations(const float* x, int64_t n_tokens, int64_t n_cols, Q8Block* out);

// Everything a row-range kernel needs. Exactly one of xq / xf is used, by the weight type.
struct GemvArgs {
  const uint8_t* w;    // row 0 of the weight
  uint64_t row_bytes;  // bytes per weight row
  int64_t n_cols;      // K
  int64_t n_rows;      // N, also the output's row stride
  const Q8Block* xq;   // [n_tokens][n_cols / 32] quantized activations (quantized weight types)
  const float* xf;     // [n_tokens][n_cols] float activations (F32, F16, BF16)
  float* y;            // [n_tokens][n_rows]
};

// Computes y[t][r] for r in [r0, r1) and t < NT, where NT is the token count the kernel was picked for.
using GemvRowsFn = void (*)(const GemvArgs& args, int64_t r0, int64_t r1);

// True when the type's GEMV reads quantized activations (xq), false when it reads float ones (xf).
constexpr bool gemv_uses_q8(GgmlType type) {
  return type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16;
}
// The kernel for (type, n_tokens in 1..8) in the given variant; nullptr when the type has none.
GemvRowsFn gemv_kernel_scalar(GgmlType type, int n_tokens);
GemvRowsFn gemv_kernel_avx2(GgmlType type, int n_tokens);

// The dispatch both variants share; an ISA file holds only its kernels and the list of them.
//   Rows  the variant's two row loops, as variable templates giving their address for a kernel class and NT:
//           Rows::quant<Kern, NT> (quantized types, reads xq) and Rows::floats<Kern, NT> (F32/F16/BF16, reads xf)
//   Kerns the variant's per-type kernel classes, each naming its weight type as kType
// The loop is picked by gemv_uses_q8(kType), the rule matmul.cpp prepares the activations by, so the two cannot
// disagree. Every kernel is instantiated for NT = 1..kCpuGemvMaxTokens.
template <class Rows, class Kern, int NT>
constexpr GemvRowsFn gemv_rows_fn() {
  if constexpr (gemv_uses_q8(Kern::kType))
    return Rows::template quant<Kern, NT>;
  else
    return Rows::template floats<Kern, NT>;
}

template <class Rows, class Kern, int... I>
constexpr std::array<GemvRowsFn, sizeof...(I)> gemv_rows_table(std::integer_sequence<int, I...>) {
  return {gemv_rows_fn<Rows, Kern, I + 1>()...};
}

// Kern's row loop for a run-time token count; nullptr outside 1..kCpuGemvMaxTokens.
template <class Rows, class Kern>
GemvRowsFn gemv_rows_for_tokens(int n_tokens) {
  constexpr int kMaxTokens = static_cast<int>(kCpuGemvMaxTokens);
  static constexpr auto kByTokens = gemv_rows_table<Rows, Kern>(std::make_integer_sequence<int, kMaxTokens>{});
  return n_tokens >= 1 && n_tokens <= kMaxTokens ? kByTokens[static_cast<size_t>(n_tokens - 1)] : nullptr;
}

// The kernel of the class in Kerns whose kType is `type`; nullptr when none is.
template <class Rows, class... Kerns>
GemvRowsFn pick_gemv_kernel(GgmlType type, int n_tokens) {
  using ForTokens = GemvRowsFn (*)(int);
  static constexpr std::pair<GgmlType, ForTokens> kByType[] = {{Kerns::kType, &gemv_rows_for_tokens<Rows, Kerns>}...};
  for (const auto& [kern_type, for_tokens] : kByType)
    if (kern_type == type) return for_tokens(n_tokens);
  return nullptr;
}

}  // namespace ferry::cpu::detail
