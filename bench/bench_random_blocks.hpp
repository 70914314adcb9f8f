// Random GGUF blocks for the benchmarks: valid tensors of any type, fast to make at model sizes (the reference
// quantizer would take minutes for an 8B block). Header-only; not a library header.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bench_common.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"

namespace ferry::bench {

// Random blocks: random quant bytes, finite half scales of random magnitude (2^-12 .. 2^-4); float types hold
// Gaussian-ish values. Timing does not depend on the values, validity does (no Inf/NaN to propagate).
inline std::vector<uint8_t> random_quant_tensor(ferry::GgmlType type, int64_t n_elems, uint64_t seed) {
  const ferry::TypeTraits& t = ferry::type_traits(type);
  std::vector<uint8_t> v(ferry::row_bytes(type, n_elems));
  Lcg rng(seed);
  for (size_t i = 0; i + 8 <= v.size(); i += 8) {
    const uint64_t r = rng.next();
    std::memcpy(v.data() + i, &r, 8);
  }
  auto put16 = [&](size_t off, uint16_t h) { std::memcpy(v.data() + off, &h, 2); };
  auto scale = [&] { return std::ldexp(rng.uniform(1.0f, 2.0f), -4 - static_cast<int>(rng.next() % 9)); };
  switch (type) {
    case ferry::GgmlType::F32:
      for (int64_t i = 0; i < n_elems; ++i) {
        const float f = rng.uniform(-1.0f, 1.0f);
        std::memcpy(v.data() + 4 * i, &f, 4);
      }
      return v;
    case ferry::GgmlType::F16:
    case ferry::GgmlType::BF16:
      for (int64_t i = 0; i < n_elems; ++i) {
        const float f = rng.uniform(-1.0f, 1.0f);
        put16(2 * i, type == ferry::GgmlType::F16 ? ferry::fp32_to_fp16(f) : ferry::fp32_to_bf16(f));
      }
      return v;
    default:
      break;
  }
  std::vector<int> offs;
  switch (type) {
    case ferry::GgmlType::Q4_1:
    case ferry::GgmlType::Q5_1:
    case ferry::GgmlType::Q4_K:
    case ferry::GgmlType::Q5_K:
      offs = {0, 2};
      break;
    case ferry::GgmlType::Q2_K:
      offs = {80, 82};
      break;
    case ferry::GgmlType::Q3_K:
      offs = {108};
      break;
    case ferry::GgmlType::Q6_K:
      offs = {208};
      break;
    default:
      offs = {0};
      break;
  }
  for (size_t b = 0; b < v.size() / t.type_size; ++b)
    for (int o : offs) put16(b * t.type_size + o, ferry::fp32_to_fp16((rng.next() & 1) ? scale() : -scale()));
  return v;
}

}  // namespace ferry::bench
