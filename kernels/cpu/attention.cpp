// cpu::attention: softmax(q k^T * scale) v per query and head, K and V as FP16 (the KV cache format).
//
// One task per (query, head) pair, all pairs in parallel. Each task streams over its visible keys in blocks of
// kKeyBlock with an online softmax (running max m, running sum l, running output acc rescaled by exp(m_old - m_new)
// whenever the max grows), so memory per task is one block of scores plus one head_dim accumulator: nothing of size
// n_q x n_kv ever exists, whatever the sequence length. With GQA, query head h reads KV head h / (n_head / n_kv_head);
// the K/V rows a KV head shares stay in cache across its query heads' tasks.
// Numerics: FP16 -> FP32 conversion is exact; dot products, exponentials and accumulation are float32 with the max
// subtracted, so no exponential overflows and a row's error stays ~1e-6 relative for the lengths this runs at.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ferry/half.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "isa.hpp"
#include "op_checks.hpp"

#if FERRY_CPU_X86
#include <immintrin.h>
#endif

namespace ferry::cpu {
namespace {

constexpr int64_t kKeyBlock = 64;

float dot_f16_scalar(const float* q, const uint16_t* k, int64_t d) {
  float part[4] = {};
  int64_t e = 0;
  for (; e + 4 <= d; e += 4)
    for (int l = 0; l < 4; ++l) part[l] += q[e + l] * fp16_to_fp32(k[e + l]);
  float s = (part[0] + part[1]) + (part[2] + part[3]);
  for (; e < d; ++e) s += q[e] * fp16_to_fp32(k[e]);
  return s;
}

// acc = acc * c + p * v
void scale_axpy_f16_scalar(float* acc, float c, float p, const uint16_t* v, int64_t d) {
  for (int64_t e = 0; e < d; ++e) acc[e] = acc[e] * c + p * fp16_to_fp32(v[e]);
}

#if FERRY_CPU_X86
FERRY_TARGET_AVX2 float dot_f16_avx2(const float* q, const uint16_t* k, int64_t d) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t e = 0;
  for (; e + 16 <= d; e += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + e))), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e + 8),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + e + 8))), a1);
  }
  for (; e + 8 <= d; e += 8)
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + e),
                         _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + e))), a0);
  const __m256 a = _mm256_add_ps(a0, a1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float r = _mm_cvtss_f32(s);
  for (; e < d; ++e) r += q[e] * _cvtsh_ss(k[e]);
  return r;
}

FERRY_TARGET_AVX2 void scale_axpy_f16_avx2(float* acc, float c, float p, const uint16_t* v, int64_t d) {
  const __m256 vc = _mm256_set1_ps(c), vp = _mm256_set1_ps(p);
  int64_t e = 0;
  for (; e + 8 <= d; e += 8) {
    const __m256 vv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + e)));
    _mm256_storeu_ps(acc + e, _mm256_fmadd_ps(vp, vv, _mm256_mul_ps(_mm256_loadu_ps(acc + e), vc)));
  }
  for (; e < d; ++e) acc[e] = acc[e] * c + p * _cvtsh_ss(v[e]);
}
#endif

struct VecOps {
  float (*dot)(const float*, const uint16_t*, int64_t);
  void (*scale_axpy)(float*, float, float, const uint16_t*, int64_t);
};

VecOps pick_vec_ops() {
#if FERRY_CPU_X86
  if (detail::active_isa() == detail::CpuIsa::AVX2) return {dot_f16_avx2, scale_axpy_f16_avx2};
#endif
  return {dot_f16_scalar, scale_axpy_f16_scalar};
}

// One (query, head): keys [0, visible) of KV head kvh.
void attend_one(const AttentionShape& s, const VecOps& ops, const float* q, const uint16_t* k, const uint16_t* v,
                int64_t kvh, int64_t visible, float* acc, float* out) {
  const int64_t d = s.head_dim;
  const int64_t row = s.n_kv_head * d;  // elements between consecutive positions of one KV head
  float m = -std::numeric_limits<float>::infinity();
  float l = 0.0f;
  std::fill(acc, acc + d, 0.0f);
  float scores[kKeyBlock];
  for (int64_t j0 = 0; j0 < visible; j0 += kKeyBlock) {
    const int64_t nj = std::min(kKeyBlock, visible - j0);
    float block_max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < nj; ++j) {
      scores[j] = ops.dot(q, k + (j0 + j) * row + kvh * d, d) * s.scale;
      block_max = std::max(block_max, scores[j]);
    }
    const float m_new = std::max(m, block_max);
    // First block: m is -inf, exp(-inf) = 0 rescales the empty accumulator harmlessly.
    float correction = std::exp(m - m_new);
    for (int64_t j = 0; j < nj; ++j) {
      const float p = std::exp(scores[j] - m_new);
      l = l * correction + p;
      ops.scale_axpy(acc, correction, p, v + (j0 + j) * row + kvh * d, d);
      correction = 1.0f;  // applied once per block, folded into the first key's update
    }
    m = m_new;
  }
  const float inv = 1.0f / l;
  for (int64_t e = 0; e < d; ++e) out[e] = acc[e] * inv;
}

}  // namespace

void attention(const AttentionShape& s, const float* q, const uint16_t* k, const uint16_t* v, float* out) {
  ferry::detail::check_attention("cpu::attention", s);
  const int64_t pairs = s.n_q * s.n_head;
  if (pairs == 0) return;
  const int64_t group = s.n_head / s.n_kv_head;
  const VecOps ops = pick_vec_ops();
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, pairs, 1), [&](const tbb::blocked_range<int64_t>& r) {
    float acc[ferry::detail::kMaxHeadDim];  // check_attention bounds head_dim: no allocation per call
    for (int64_t pair = r.begin(); pair < r.end(); ++pair) {
      const int64_t i = pair / s.n_head, h = pair % s.n_head;
      const int64_t visible = s.causal ? s.q_pos0 + i + 1 : s.n_kv;
      attend_one(s, ops, q + pair * s.head_dim, k, v, h / group, visible, acc, out + pair * s.head_dim);
    }
  });
}

}  // namespace ferry::cpu
