// Portable GEMV kernels (the fallback variant) and the activation quantizer shared by every variant.
//
// Every quantized type is decoded one 32-element sub-block at a time into the common form
//     w[e] = d * sc[h] * q[e] - m[h]        (h = e / 16, q an int8 code, sc an integer scale, m a float offset)
// so one generic loop computes the integer sums and one float scaling per half; the per-type code is only the
// decoder. The same form, written with AVX2 instructions per type, is gemv_avx2.cpp. See gemv.hpp for the design
// and the error budget.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ferry/half.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "gemv.hpp"

namespace ferry::cpu::detail {

void quantize_activations(const float* x, int64_t n_tokens, int64_t n_cols, Q8Block* out) {
  const int64_t n_blocks = n_tokens * (n_cols / kQ8BlockSize);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* xb = x + b * kQ8BlockSize;
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < kQ8BlockSize; ++i) {
      amax = std::max(amax, std::fabs(xb[i]));
      finite = finite && std::isfinite(xb[i]);
    }
    Q8Block& q = out[b];
    if (!finite) {  // propagate as NaN: d * anything is NaN, so every output this block feeds is NaN
      q.d = q.ds = std::numeric_limits<float>::quiet_NaN();
      std::memset(q.qs, 0, sizeof(q.qs));
      q.sum[0] = q.sum[1] = 0;
      continue;
    }
    q.d = amax / 127.0f;
    // A block so small that 127 / amax overflows is zero to int8 precision: all codes 0 (the GPU does the same).
    const float inv = amax > 0.0f && 127.0f / amax <= std::numeric_limits<float>::max() ? 127.0f / amax : 0.0f;
    int sum[2] = {0, 0};
    for (int i = 0; i < kQ8BlockSize; ++i) {
      // nearbyint: round half to even in the default rounding mode; |x * inv| <= 127 (+1 ulp, which still rounds to
      // 127), so the cast never overflows.
      const int v = static_cast<int>(std::nearbyint(xb[i] * inv));
      q.qs[i] = static_cast<int8_t>(v);
      sum[i / 16] += v;
    }
    q.sum[0] = static_cast<int16_t>(sum[0]);
    q.sum[1] = static_cast<int16_t>(sum[1]);
    q.ds = q.d * static_cast<float>(sum[0] + sum[1]);
  }
}

namespace {

// One 32-element sub-block in the common form (see the top of this file).
struct Sub32 {
  int8_t q[32];
  int32_t sc[2];
  float d;
  float m[2];
};

template <class Block>
Block load_block(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof(Block));  // rows carry no alignment promise beyond bytes
  return b;
}

uint32_t load_u32_le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

void set_uniform(Sub32& s, float d, int32_t sc, float m) {
  s.d = d;
  s.sc[0] = s.sc[1] = sc;
  s.m[0] = s.m[1] = m;
}

// Decoders: kElems elements of weight type kType in kBytes bytes become kElems / 32 Sub32s.
struct DecQ4_0 {
  static constexpr GgmlType kType = GgmlType::Q4_0;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_0);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ4_0>(p);
    for (int j = 0; j < 16; ++j) {
      out->q[j] = static_cast<int8_t>((b.qs[j] & 15) - 8);
      out->q[j + 16] = static_cast<int8_t>((b.qs[j] >> 4) - 8);
    }
    set_uniform(*out, fp16_to_fp32(b.d), 1, 0.0f);
  }
};

struct DecQ4_1 {
  static constexpr GgmlType kType = GgmlType::Q4_1;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ4_1);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ4_1>(p);
    for (int j = 0; j < 16; ++j) {
      out->q[j] = static_cast<int8_t>(b.qs[j] & 15);
      out->q[j + 16] = static_cast<int8_t>(b.qs[j] >> 4);
    }
    set_uniform(*out, fp16_to_fp32(b.d), 1, -fp16_to_fp32(b.m));  // w = d q + m
  }
};

template <class Block, bool kHasMin>
void decode_q5(const uint8_t* p, Sub32* out) {
  const auto b = load_block<Block>(p);
  const uint32_t qh = load_u32_le(b.qh);
  const int offset = kHasMin ? 0 : 16;
  for (int j = 0; j < 16; ++j) {
    out->q[j] = static_cast<int8_t>(((b.qs[j] & 15) | (((qh >> j) & 1) << 4)) - offset);
    out->q[j + 16] = static_cast<int8_t>(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - offset);
  }
  float m = 0.0f;
  if constexpr (kHasMin) m = -fp16_to_fp32(b.m);
  set_uniform(*out, fp16_to_fp32(b.d), 1, m);
}
struct DecQ5_0 {
  static constexpr GgmlType kType = GgmlType::Q5_0;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_0);
  static void decode(const uint8_t* p, Sub32* out) { decode_q5<BlockQ5_0, false>(p, out); }
};
struct DecQ5_1 {
  static constexpr GgmlType kType = GgmlType::Q5_1;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ5_1);
  static void decode(const uint8_t* p, Sub32* out) { decode_q5<BlockQ5_1, true>(p, out); }
};

struct DecQ8_0 {
  static constexpr GgmlType kType = GgmlType::Q8_0;
  static constexpr int kElems = 32, kBytes = sizeof(BlockQ8_0);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ8_0>(p);
    std::memcpy(out->q, b.qs, 32);
    set_uniform(*out, fp16_to_fp32(b.d), 1, 0.0f);
  }
};

struct DecIQ4_NL {
  static constexpr GgmlType kType = GgmlType::IQ4_NL;
  static constexpr int kElems = 32, kBytes = sizeof(BlockIQ4_NL);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockIQ4_NL>(p);
    for (int j = 0; j < 16; ++j) {
      out->q[j] = kIq4nlValues[b.qs[j] & 15];
      out->q[j + 16] = kIq4nlValues[b.qs[j] >> 4];
    }
    set_uniform(*out, fp16_to_fp32(b.d), 1, 0.0f);
  }
};

// Sub-block s = 4h + j: elements 128h + 32j + l are bits 2j of qs[32h + l]; its halves are groups 2s and 2s + 1.
struct DecQ2_K {
  static constexpr GgmlType kType = GgmlType::Q2_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ2_K);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ2_K>(p);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int s = 0; s < 8; ++s) {
      const int h = s / 4, j = s % 4;
      for (int l = 0; l < 32; ++l) out[s].q[l] = static_cast<int8_t>((b.qs[32 * h + l] >> (2 * j)) & 3);
      out[s].d = d;
      for (int half = 0; half < 2; ++half) {
        out[s].sc[half] = b.scales[2 * s + half] & 15;
        out[s].m[half] = dmin * static_cast<float>(b.scales[2 * s + half] >> 4);
      }
    }
  }
};

struct DecQ3_K {
  static constexpr GgmlType kType = GgmlType::Q3_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ3_K);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ3_K>(p);
    const float d = fp16_to_fp32(b.d);
    for (int s = 0; s < 8; ++s) {
      const int h = s / 4, j = s % 4;
      for (int l = 0; l < 32; ++l) {
        const int low = (b.qs[32 * h + l] >> (2 * j)) & 3;
        const int high = (b.hmask[l] >> (4 * h + j)) & 1;
        out[s].q[l] = static_cast<int8_t>(low - (high ? 0 : 4));
      }
      out[s].d = d;
      for (int half = 0; half < 2; ++half) {
        out[s].sc[half] = q3_k_scale(2 * s + half, b.scales) - 32;
        out[s].m[half] = 0.0f;
      }
    }
  }
};

// Sub-block g: low (g even) or high (g odd) nibbles of qs[32 (g / 2) + l], plus Q5_K's bit g of qh[l].
template <class Block, bool kFifthBit>
void decode_k4_like(const uint8_t* p, Sub32* out) {
  const auto b = load_block<Block>(p);
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  for (int g = 0; g < 8; ++g) {
    uint8_t sc = 0, m = 0;
    k4_scale_min(g, b.scales, &sc, &m);
    const int shift = 4 * (g % 2);
    for (int l = 0; l < 32; ++l) {
      int q = (b.qs[32 * (g / 2) + l] >> shift) & 15;
      if constexpr (kFifthBit) q |= ((b.qh[l] >> g) & 1) << 4;
      out[g].q[l] = static_cast<int8_t>(q);
    }
    set_uniform(out[g], d, sc, dmin * static_cast<float>(m));
  }
}
struct DecQ4_K {
  static constexpr GgmlType kType = GgmlType::Q4_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ4_K);
  static void decode(const uint8_t* p, Sub32* out) { decode_k4_like<BlockQ4_K, false>(p, out); }
};
struct DecQ5_K {
  static constexpr GgmlType kType = GgmlType::Q5_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ5_K);
  static void decode(const uint8_t* p, Sub32* out) { decode_k4_like<BlockQ5_K, true>(p, out); }
};

// Sub-block s = 4h + k: element l takes ql[64h + 32 (k % 2) + l] nibble k / 2 and qh[32h + l] bits 2k, 2k + 1.
struct DecQ6_K {
  static constexpr GgmlType kType = GgmlType::Q6_K;
  static constexpr int kElems = 256, kBytes = sizeof(BlockQ6_K);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockQ6_K>(p);
    const float d = fp16_to_fp32(b.d);
    for (int s = 0; s < 8; ++s) {
      const int h = s / 4, k = s % 4;
      for (int l = 0; l < 32; ++l) {
        const int low = (b.ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
        const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
        out[s].q[l] = static_cast<int8_t>((low | (high << 4)) - 32);
      }
      out[s].d = d;
      for (int half = 0; half < 2; ++half) {
        out[s].sc[half] = b.scales[2 * s + half];
        out[s].m[half] = 0.0f;
      }
    }
  }
};

struct DecIQ4_XS {
  static constexpr GgmlType kType = GgmlType::IQ4_XS;
  static constexpr int kElems = 256, kBytes = sizeof(BlockIQ4_XS);
  static void decode(const uint8_t* p, Sub32* out) {
    const auto b = load_block<BlockIQ4_XS>(p);
    const float d = fp16_to_fp32(b.d);
    for (int g = 0; g < 8; ++g) {
      for (int j = 0; j < 16; ++j) {
        out[g].q[j] = kIq4nlValues[b.qs[16 * g + j] & 15];
        out[g].q[j + 16] = kIq4nlValues[b.qs[16 * g + j] >> 4];
      }
      set_uniform(out[g], d, iq4_xs_scale(g, b) - 32, 0.0f);
    }
  }
};

template <class Dec, int NT>
void rows_quant(const GemvArgs& a, int64_t r0, int64_t r1) {
  constexpr int kSubs = Dec::kElems / 32;
  const int64_t n_blocks = a.n_cols / Dec::kElems;
  const int64_t q8_per_token = a.n_cols / kQ8BlockSize;
  Sub32 sub[kSubs];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + static_cast<uint64_t>(r) * a.row_bytes;
    float acc[NT] = {};
    for (int64_t b = 0; b < n_blocks; ++b) {
      Dec::decode(row + b * Dec::kBytes, sub);
      for (int s = 0; s < kSubs; ++s) {
        const Sub32& u = sub[s];
        for (int t = 0; t < NT; ++t) {
          const Q8Block& x = a.xq[t * q8_per_token + b * kSubs + s];
          int32_t isum[2] = {0, 0};
          for (int half = 0; half < 2; ++half)
            for (int e = 16 * half; e < 16 * half + 16; ++e) isum[half] += u.q[e] * x.qs[e];
          const float scaled = u.d * static_cast<float>(u.sc[0] * isum[0] + u.sc[1] * isum[1]);
          acc[t] += x.d * (scaled - (u.m[0] * x.sum[0] + u.m[1] * x.sum[1]));
        }
      }
    }
    for (int t = 0; t < NT; ++t) a.y[t * a.n_rows + r] = acc[t];
  }
}

struct ConvF32 {
  static constexpr GgmlType kType = GgmlType::F32;
  static float at(const uint8_t* p, int64_t i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
};
struct ConvF16 {
  static constexpr GgmlType kType = GgmlType::F16;
  static float at(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return fp16_to_fp32(h);
  }
};
struct ConvBF16 {
  static constexpr GgmlType kType = GgmlType::BF16;
  static float at(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return bf16_to_fp32(h);
  }
};

// Float weights: convert a chunk once, dot it with every token (eight partial sums so the adds can vectorise).
template <class Conv, int NT>
void rows_float(const GemvArgs& a, int64_t r0, int64_t r1) {
  constexpr int64_t kChunk = 256;
  float w[kChunk];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = a.w + static_cast<uint64_t>(r) * a.row_bytes;
    float part[NT][8] = {};
    for (int64_t c0 = 0; c0 < a.n_cols; c0 += kChunk) {
      const int64_t len = std::min(kChunk, a.n_cols - c0);
      for (int64_t i = 0; i < len; ++i) w[i] = Conv::at(row, c0 + i);
      for (int t = 0; t < NT; ++t) {
        const float* x = a.xf + t * a.n_cols + c0;
        for (int64_t i = 0; i < len; ++i) part[t][i % 8] += w[i] * x[i];
      }
    }
    for (int t = 0; t < NT; ++t) {
      float s = 0.0f;
      for (float p : part[t]) s += p;
      a.y[t * a.n_rows + r] = s;
    }
  }
}

// The row loops for pick_gemv_kernel (gemv.hpp).
struct ScalarRows {
  template <class Dec, int NT>
  static constexpr GemvRowsFn quant = &rows_quant<Dec, NT>;
  template <class Conv, int NT>
  static constexpr GemvRowsFn floats = &rows_float<Conv, NT>;
};

}  // namespace

GemvRowsFn gemv_kernel_scalar(GgmlType type, int n_tokens) {
  return pick_gemv_kernel<ScalarRows, ConvF32, ConvF16, ConvBF16, DecQ4_0, DecQ4_1, DecQ5_0, DecQ5_1, DecQ8_0, DecQ2_K,
                          DecQ3_K, DecQ4_K, DecQ5_K, DecQ6_K, DecIQ4_NL, DecIQ4_XS>(type, n_tokens);
}

}  // namespace ferry::cpu::detail
