// Scalar reference dequantization: the oracle every CPU and CUDA kernel is tested against.
//
// Bit-exactness contract: every value equals what the Python `gguf` package (gguf.quants.dequantize) produces. That
// package computes in float32 with one rounding per numpy operation, so each formula below keeps its operation order:
//   Q4_0, Q5_0, Q8_0, IQ4_NL : d * q
//   Q4_1, Q5_1               : (d * q) + m
//   Q2_K, Q4_K, Q5_K         : (d * sc) * q - (dmin * m)      both products rounded before the subtraction
//   Q3_K, Q6_K, IQ4_XS       : (d * sc) * q
// This file is compiled with -ffp-contract=off (kernels/CMakeLists.txt): a fused multiply-add would skip the rounding
// of the first product and change the last bit of some values.
#include <cstring>
#include <string>

#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry::ref {
namespace {

void dequant_q4_0(const BlockQ4_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < kQK4 / 2; ++j) {
    y[j] = d * static_cast<float>((b.qs[j] & 15) - 8);
    y[j + kQK4 / 2] = d * static_cast<float>((b.qs[j] >> 4) - 8);
  }
}

void dequant_q4_1(const BlockQ4_1& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  for (int j = 0; j < kQK4 / 2; ++j) {
    y[j] = d * static_cast<float>(b.qs[j] & 15) + m;
    y[j + kQK4 / 2] = d * static_cast<float>(b.qs[j] >> 4) + m;
  }
}

uint32_t load_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

void dequant_q5_0(const BlockQ5_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < kQK4 / 2; ++j) {
    const int lo = (b.qs[j] & 15) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + kQK4 / 2] = d * static_cast<float>(hi - 16);
  }
}

void dequant_q5_1(const BlockQ5_1& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float m = fp16_to_fp32(b.m);
  const uint32_t qh = load_u32_le(b.qh);
  for (int j = 0; j < kQK4 / 2; ++j) {
    const int lo = (b.qs[j] & 15) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + kQK4 / 2] = d * static_cast<float>(hi) + m;
  }
}

void dequant_q8_0(const BlockQ8_0& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < kQK4; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

// Element 128h + 32j + l (h: half, j: shift step, l = 0..31) is bits 2j of qs[32h + l], in group (128h + 32j + l) / 16.
void dequant_q2_k(const BlockQ2_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const uint8_t s = b.scales[e / 16];
        const float dl = d * static_cast<float>(s & 15);
        const float ml = dmin * static_cast<float>(s >> 4);
        const int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
        y[e] = dl * static_cast<float>(q) - ml;
      }
    }
  }
}

// As Q2_K, plus the high-mask bit 4h + j of hmask[l]; a clear bit subtracts 4.
void dequant_q3_k(const BlockQ3_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * j + l;
        const float dl = d * static_cast<float>(q3_k_scale(e / 16, b.scales) - 32);
        const int low = (b.qs[32 * h + l] >> (2 * j)) & 3;
        const int high = (b.hmask[l] >> (4 * h + j)) & 1;
        y[e] = dl * static_cast<float>(low - (high ? 0 : 4));
      }
    }
  }
}

// Chunk c of 64: low nibbles of qs[32c + l] are group 2c, high nibbles group 2c + 1. fifth_bit_of(g, l) adds Q5_K's
// bit g of qh[l] (always 0 for Q4_K).
template <class Block, class FifthBit>
void dequant_k4_like(const Block& b, float* y, FifthBit fifth_bit_of) {
  const float d = fp16_to_fp32(b.d);
  const float dmin = fp16_to_fp32(b.dmin);
  for (int g = 0; g < 8; ++g) {
    uint8_t sc = 0, m = 0;
    k4_scale_min(g, b.scales, &sc, &m);
    const float dl = d * static_cast<float>(sc);
    const float ml = dmin * static_cast<float>(m);
    const int c = g / 2;
    const int shift = 4 * (g % 2);
    for (int l = 0; l < 32; ++l) {
      const int q = ((b.qs[32 * c + l] >> shift) & 15) | (fifth_bit_of(g, l) << 4);
      y[32 * g + l] = dl * static_cast<float>(q) - ml;
    }
  }
}

void dequant_q4_k(const BlockQ4_K& b, float* y) {
  dequant_k4_like(b, y, [](int, int) { return 0; });
}

void dequant_q5_k(const BlockQ5_K& b, float* y) {
  dequant_k4_like(b, y, [&b](int g, int l) { return (b.qh[l] >> g) & 1; });
}

// Element 128h + 32k + l: low 4 bits from ql[64h + 32(k % 2) + l] (low nibble for k < 2, high for k >= 2), high 2 bits
// from qh[32h + l] >> 2k; group (128h + 32k + l) / 16.
void dequant_q6_k(const BlockQ6_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * k + l;
        const float dl = d * static_cast<float>(b.scales[e / 16]);
        const int low = (b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
        const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
        y[e] = dl * static_cast<float>((low | (high << 4)) - 32);
      }
    }
  }
}

void dequant_iq4_nl(const BlockIQ4_NL& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int j = 0; j < kQK4 / 2; ++j) {
    y[j] = d * static_cast<float>(kIq4nlValues[b.qs[j] & 15]);
    y[j + kQK4 / 2] = d * static_cast<float>(kIq4nlValues[b.qs[j] >> 4]);
  }
}

// Group g reads qs[16g .. 16g + 15]: low nibbles are its elements 0..15, high nibbles 16..31 (Q4_0 order).
void dequant_iq4_xs(const BlockIQ4_XS& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  for (int g = 0; g < 8; ++g) {
    const float dl = d * static_cast<float>(iq4_xs_scale(g, b) - 32);
    for (int j = 0; j < 16; ++j) {
      const uint8_t q = b.qs[16 * g + j];
      y[32 * g + j] = dl * static_cast<float>(kIq4nlValues[q & 15]);
      y[32 * g + j + 16] = dl * static_cast<float>(kIq4nlValues[q >> 4]);
    }
  }
}

// Blocks are read with memcpy into a local: the source is a byte pointer into a mapped file with no alignment promise.
template <class Block, void (*kFn)(const Block&, float*), int kElems>
void dequant_blocks(const void* src, float* dst, int64_t n_blocks) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n_blocks; ++i) {
    Block b;
    std::memcpy(&b, p + i * static_cast<int64_t>(sizeof(Block)), sizeof(Block));
    kFn(b, dst + i * kElems);
  }
}

}  // namespace

void dequantize(GgmlType type, const void* src, float* dst, int64_t n) {
  const TypeTraits& t = type_traits(type);
  if (!t.dequantizable)
    fail(ErrorCategory::UNSUPPORTED, "dequantizing GGML type " + std::string(t.name) + " (id " +
                                         std::to_string(static_cast<uint32_t>(type)) + ") is not supported");
  if (n < 0 || n % t.block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, "dequantize " + std::string(t.name) + ": " + std::to_string(n) +
                                              " elements is not a multiple of the block size " +
                                              std::to_string(t.block_size));
  if (n == 0) return;
  const int64_t nb = n / t.block_size;
  switch (type) {
    case GgmlType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case GgmlType::F16: {
      const auto* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = fp16_to_fp32(h);
      }
      return;
    }
    case GgmlType::BF16: {
      const auto* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
      }
      return;
    }
    case GgmlType::Q4_0:
      return dequant_blocks<BlockQ4_0, dequant_q4_0, kQK4>(src, dst, nb);
    case GgmlType::Q4_1:
      return dequant_blocks<BlockQ4_1, dequant_q4_1, kQK4>(src, dst, nb);
    case GgmlType::Q5_0:
      return dequant_blocks<BlockQ5_0, dequant_q5_0, kQK4>(src, dst, nb);
    case GgmlType::Q5_1:
      return dequant_blocks<BlockQ5_1, dequant_q5_1, kQK4>(src, dst, nb);
    case GgmlType::Q8_0:
      return dequant_blocks<BlockQ8_0, dequant_q8_0, kQK4>(src, dst, nb);
    case GgmlType::Q2_K:
      return dequant_blocks<BlockQ2_K, dequant_q2_k, kQKK>(src, dst, nb);
    case GgmlType::Q3_K:
      return dequant_blocks<BlockQ3_K, dequant_q3_k, kQKK>(src, dst, nb);
    case GgmlType::Q4_K:
      return dequant_blocks<BlockQ4_K, dequant_q4_k, kQKK>(src, dst, nb);
    case GgmlType::Q5_K:
      return dequant_blocks<BlockQ5_K, dequant_q5_k, kQKK>(src, dst, nb);
    case GgmlType::Q6_K:
      return dequant_blocks<BlockQ6_K, dequant_q6_k, kQKK>(src, dst, nb);
    case GgmlType::IQ4_NL:
      return dequant_blocks<BlockIQ4_NL, dequant_iq4_nl, kQK4>(src, dst, nb);
    case GgmlType::IQ4_XS:
      return dequant_blocks<BlockIQ4_XS, dequant_iq4_xs, kQKK>(src, dst, nb);
    default:
      break;
  }
  fail(ErrorCategory::INTERNAL, "type table marks " + std::string(t.name) + " dequantizable but no reference exists");
}

double expansion_ratio(GgmlType type) {
  const TypeTraits& t = type_traits(type);
  return static_cast<double>(t.block_size) * sizeof(float) / static_cast<double>(t.type_size);
}

}  // namespace ferry::ref
