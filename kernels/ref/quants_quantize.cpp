// Reference quantization: the entry point, the 16-bit float types, and the 32-element round-to-nearest types.
//
// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 produce the same bytes as the Python `gguf` package's quantizer (and ggml's
// reference): one scale from the block's extreme value, d = max / -8 (Q4_0), (max - min) / 15 (Q4_1), amax / 127
// (Q8_0), values truncated after adding 8.5 / 16.5 / 0.5, or rounded half away from zero (Q8_0). Identical bytes make
// files comparable with other tools; the inverse scale is taken from the float scale before it is rounded to half,
// as those tools do. Compiled with -ffp-contract=off so x * id + 8.5f rounds twice, like numpy.
//
// Every quantizer is a pure function of its inputs (no static mutable state): a 7 GB file is made by quantizing
// rows from many threads at once.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "quantize_internal.hpp"

namespace ferry::ref {
namespace {

using detail::scale_to_half;

// The signed value of largest magnitude (the first one on ties).
float signed_absmax(const float* x, int n) {
  float amax = 0, vmax = 0;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      vmax = x[j];
    }
  }
  return vmax;
}

void min_max(const float* x, int n, float& lo, float& hi) {
  lo = x[0];
  hi = x[0];
  for (int j = 1; j < n; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
}

// Truncation of a non-negative value, as numpy's trunc + astype(uint8) + clip(0, top) does.
int trunc_code(float v, int top) { return std::clamp(static_cast<int>(v), 0, top); }

void quantize_q4_0(const float* x, BlockQ4_0& b, int64_t bi) {
  const float d = signed_absmax(x, kQK4) / -8.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = scale_to_half(d, "Q4_0", bi);
  for (int j = 0; j < kQK4 / 2; ++j) {
    const int lo = trunc_code(x[j] * id + 8.5f, 15);
    const int hi = trunc_code(x[j + kQK4 / 2] * id + 8.5f, 15);
    b.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

void quantize_q4_1(const float* x, BlockQ4_1& b, int64_t bi) {
  float lo, hi;
  min_max(x, kQK4, lo, hi);
  const float d = (hi - lo) / 15.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = scale_to_half(d, "Q4_1", bi);
  b.m = scale_to_half(lo, "Q4_1", bi);
  for (int j = 0; j < kQK4 / 2; ++j) {
    const int q0 = trunc_code((x[j] - lo) * id + 0.5f, 15);
    const int q1 = trunc_code((x[j + kQK4 / 2] - lo) * id + 0.5f, 15);
    b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// Q5 packing: nibbles as Q4_0, the fifth bit of element e into bit e of the little-endian u32 qh.
void pack_q5(const int* q, uint8_t* qs, uint8_t* qh) {
  uint32_t bits = 0;
  for (int e = 0; e < kQK4; ++e) bits |= static_cast<uint32_t>(q[e] >> 4) << e;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
  for (int j = 0; j < kQK4 / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + kQK4 / 2] & 15) << 4));
}

void quantize_q5_0(const float* x, BlockQ5_0& b, int64_t bi) {
  const float d = signed_absmax(x, kQK4) / -16.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = scale_to_half(d, "Q5_0", bi);
  int q[kQK4];
  for (int e = 0; e < kQK4; ++e) q[e] = trunc_code(x[e] * id + 16.5f, 31);
  pack_q5(q, b.qs, b.qh);
}

void quantize_q5_1(const float* x, BlockQ5_1& b, int64_t bi) {
  float lo, hi;
  min_max(x, kQK4, lo, hi);
  const float d = (hi - lo) / 31.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = scale_to_half(d, "Q5_1", bi);
  b.m = scale_to_half(lo, "Q5_1", bi);
  int q[kQK4];
  for (int e = 0; e < kQK4; ++e) q[e] = trunc_code((x[e] - lo) * id + 0.5f, 31);
  pack_q5(q, b.qs, b.qh);
}

void quantize_q8_0(const float* x, BlockQ8_0& b, int64_t bi) {
  float amax = 0;
  for (int j = 0; j < kQK4; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  b.d = scale_to_half(d, "Q8_0", bi);
  // Ties away from zero (roundf), as gguf-py's np_roundf and ggml do.
  for (int j = 0; j < kQK4; ++j)
    b.qs[j] = static_cast<int8_t>(std::clamp(static_cast<int>(std::round(x[j] * id)), -127, 127));
}

// Blocks are assembled in a local and copied out: dst is a byte pointer with no alignment promise.
template <class Block, void (*kFn)(const float*, Block&, int64_t), int kElems>
void quantize_blocks(const float* src, void* dst, int64_t n_blocks) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n_blocks; ++i) {
    Block b;
    std::memset(&b, 0, sizeof b);
    kFn(src + i * kElems, b, i);
    std::memcpy(p + i * static_cast<int64_t>(sizeof(Block)), &b, sizeof(Block));
  }
}

}  // namespace

void quantize(GgmlType type, const float* src, void* dst, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (!t.quantizable)
    fail(ErrorCategory::UNSUPPORTED, "quantizing to GGML type " + std::string(t.name) + " (id " +
                                         std::to_string(static_cast<uint32_t>(type)) + ") is not supported");
  if (n < 0 || n % t.block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "quantize " + std::string(t.name) + ": " + std::to_string(n) +
                                              " elements is not a multiple of the block size " +
                                              std::to_string(t.block_size));
  if (n == 0) return;
  auto* out = static_cast<uint8_t*>(dst);
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    default:
      break;
  }
  // Block types: a NaN or infinity has no code, and would poison the whole block's scale silently.
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(src[i]))
      fail(ErrorCategory::INVALID_ARGUMENT, "quantize " + std::string(t.name) + ": element " + std::to_string(i) +
                                                " is " + (std::isnan(src[i]) ? "NaN" : "infinite") +
                                                "; only finite values can be quantized");
  const int64_t nb = n / t.block_size;
  using namespace detail;
  switch (type) {
    case GgmlType::Q4_0:
      return quantize_blocks<BlockQ4_0, quantize_q4_0, kQK4>(src, dst, nb);
    case GgmlType::Q4_1:
      return quantize_blocks<BlockQ4_1, quantize_q4_1, kQK4>(src, dst, nb);
    case GgmlType::Q5_0:
      return quantize_blocks<BlockQ5_0, quantize_q5_0, kQK4>(src, dst, nb);
    case GgmlType::Q5_1:
      return quantize_blocks<BlockQ5_1, quantize_q5_1, kQK4>(src, dst, nb);
    case GgmlType::Q8_0:
      return quantize_blocks<BlockQ8_0, quantize_q8_0, kQK4>(src, dst, nb);
    case GgmlType::Q2_K:
      return quantize_blocks<BlockQ2_K, quantize_block_q2_k, kQKK>(src, dst, nb);
    case GgmlType::Q3_K:
      return quantize_blocks<BlockQ3_K, quantize_block_q3_k, kQKK>(src, dst, nb);
    case GgmlType::Q4_K:
      return quantize_blocks<BlockQ4_K, quantize_block_q4_k, kQKK>(src, dst, nb);
    case GgmlType::Q5_K:
      return quantize_blocks<BlockQ5_K, quantize_block_q5_k, kQKK>(src, dst, nb);
    case GgmlType::Q6_K:
      return quantize_blocks<BlockQ6_K, quantize_block_q6_k, kQKK>(src, dst, nb);
    case GgmlType::IQ4_NL:
      return quantize_blocks<BlockIQ4_NL, quantize_block_iq4_nl, kQK4>(src, dst, nb);
    case GgmlType::IQ4_XS:
      return quantize_blocks<BlockIQ4_XS, quantize_block_iq4_xs, kQKK>(src, dst, nb);
    default:
      break;
  }
  fail(ErrorCategory::INTERNAL, "type table marks " + std::string(t.name) + " quantizable but no reference exists");
}

}  // namespace ferry::ref
