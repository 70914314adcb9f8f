// GPU dequantization (kernels/cuda/dequant.cu) against the scalar reference ferry::ref::dequantize.
//
// Tolerance: none. The kernels compute each value in float with the reference's operation order and a separate
// rounding per product and sum, then round to FP16 / BF16 to nearest even; so FP16 output must equal
// fp32_to_fp16(reference value) bit for bit, and BF16 output fp32_to_bf16(reference value). A kernel that fused a
// multiply-add, or computed d·q in half, would fail here on some of the random blocks.
//
// Data: random blocks with every quant, scale and mask bit random and finite half scales from 2^-20 (outputs in the
// FP16 subnormal range) up to 1; for quantizable types also blocks produced by ref::quantize from Gaussian weights.
// Shapes: rows 1, 5, 7, 13 and a big one (301; crossing many 4096-element tiles and ending in a partial tile), K of
// one, three and eight blocks. Each output sits between guard bytes; one case per type uses a source shifted by 2 bytes
// and a destination shifted by one element (the narrow-load and element-store paths).
#include <doctest/doctest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cuda_test_helpers.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/dequant.cuh"
#include "ferry/kernels/ref/quants.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

namespace ferry::test {
namespace {

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,   GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,   GgmlType::Q3_K,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

struct Mismatch {
  int64_t count = 0;
  int64_t first = -1;
  uint16_t got = 0, want = 0;
  int64_t nans = 0;
};

// Runs both 16-bit outputs for one source and compares them with the reference, element by element.
void check_case(GgmlType type, const std::vector<uint8_t>& src, int64_t n, size_t src_offset, size_t dst_offset,
                uint64_t seed) {
  INFO("type ", type_label(type), ", n = ", n, ", src offset ", src_offset, ", dst offset ", dst_offset, ", seed ",
       seed);
  std::vector<float> ref(static_cast<size_t>(n));
  ref::dequantize(type, src.data(), ref.data(), n);

  Stream stream;
  GuardedBuffer d_src(src.size(), src_offset);
  d_src.upload(src.data(), src.size());
  GuardedBuffer d_h(static_cast<size_t>(n) * 2, dst_offset);
  GuardedBuffer d_b(static_cast<size_t>(n) * 2, dst_offset);
  GuardedBuffer d_tmp(static_cast<size_t>(n) * 4);
  GuardedBuffer d_cast(static_cast<size_t>(n) * 2);
  cuda::dequantize_fp16(type, d_src.get(), d_h.get<__half>(), n, stream);
  cuda::dequantize_bf16(type, d_src.get(), d_b.get<__nv_bfloat16>(), n, stream);
  cuda::dequantize_fp16_via_fp32(type, d_src.get(), d_tmp.get<float>(), d_cast.get<__half>(), n, stream);
  stream.sync();

  const auto h = d_h.download<uint16_t>();
  const auto b = d_b.download<uint16_t>();
  const auto c = d_cast.download<uint16_t>();
  Mismatch mh, mb, mc;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t want_h = fp32_to_fp16(ref[i]);
    const uint16_t want_b = fp32_to_bf16(ref[i]);
    auto note = [&](Mismatch& m, uint16_t got, uint16_t want) {
      if (got == want) return;
      if (m.count++ == 0) m.first = i, m.got = got, m.want = want;
    };
    note(mh, h[i], want_h);
    note(mb, b[i], want_b);
    note(mc, c[i], want_h);
    mh.nans += is_nan_half(h[i]);
    mb.nans += is_nan_bf16(b[i]);
  }
  INFO("fp16: ", mh.count, " mismatches, first at ", mh.first, " got bits ", mh.got, " want ", mh.want);
  CHECK(mh.count == 0);
  INFO("bf16: ", mb.count, " mismatches, first at ", mb.first, " got bits ", mb.got, " want ", mb.want);
  CHECK(mb.count == 0);
  CHECK(mc.count == 0);  // the benchmark's FP32-then-cast path gives the same values
  {  // and its FP32 intermediate is the reference's value, to 2^-20 of the tensor's largest |value|: the GPU may fuse
     // d·sc·q - dmin·m into an FMA, which moves a cancelling difference by an ulp of its operands, not of the result;
     // an indexing or scale bug is off by a whole value.
    const auto tmp = d_tmp.download<float>();
    double largest = 0.0;
    for (float v : ref)
      if (std::isfinite(v)) largest = std::max(largest, std::fabs(static_cast<double>(v)));
    // Float types convert exactly: bit for bit there (their values span every exponent, so a scale-relative bound
    // would say nothing).
    const bool exact = type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
    const double tol = exact ? 0.0 : std::ldexp(largest, -20);
    int64_t off = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool same = tmp[i] == ref[i] || (std::isnan(ref[i]) && std::isnan(tmp[i]));  // infinities included
      off += !same && !(std::fabs(static_cast<double>(tmp[i]) - ref[i]) <= tol);
    }
    INFO("fp32 intermediate: ", off, " elements off by more than ", tol);
    CHECK(off == 0);
  }
  CHECK(mh.nans == 0);
  CHECK(mb.nans == 0);
  CHECK(d_h.guards_intact());
  CHECK(d_b.guards_intact());
  CHECK(d_cast.guards_intact());
  CHECK(d_tmp.guards_intact());
}

TEST_CASE("dequantize to FP16 and BF16 equals the rounded reference bit for bit, every type and odd shapes") {
  // FERRY_TEST_QUICK (sanitizer runs): 41 rows of K = 8 blocks still cross many 4096-element tiles.
  const int64_t big_rows = quick_mode() ? 41 : 301;
  const int64_t kRows[] = {1, 5, 7, 13, big_rows};
  uint64_t seed = test_seed(1000);
  for (GgmlType type : kTypes) {
    const int64_t qk = type_traits(type).block_size;
    // Float types have block size 1: K values that leave tails of 1..7 elements after the 8-element vectors.
    const int64_t ks[3] = {qk == 1 ? 3 : qk, qk == 1 ? 100 : 3 * qk, qk == 1 ? 1001 : 8 * qk};
    for (int64_t rows : kRows) {
      for (int64_t k : ks) {
        const int64_t n = rows * k;
        ++seed;
        check_case(type, random_blocks(type, n, seed), n, 0, 0, seed);
      }
    }
    // Misaligned source (2-byte offset; F32 needs 4) and destination (one element), several tiles.
    const int64_t n = 37 * 8 * (qk == 1 ? 33 : qk);
    ++seed;
    check_case(type, random_blocks(type, n, seed), n, type == GgmlType::F32 ? 4 : 2, 2, seed);
    // Realistic blocks from the reference quantizer.
    if (type_traits(type).quantizable && qk > 1) {
      const int64_t nq = 13 * 8 * qk;
      ++seed;
      const auto w = random_weights(static_cast<size_t>(nq), seed);
      std::vector<uint8_t> q(row_bytes(type, nq));
      ref::quantize(type, w.data(), q.data(), nq);
      check_case(type, q, nq, 0, 0, seed);
    }
  }
}

TEST_CASE("dequantize refuses unsupported types and partial blocks") {
  Stream stream;
  GuardedBuffer src(1024), dst(1024);
  CHECK(cuda::can_dequantize(GgmlType::Q4_K));
  CHECK_FALSE(cuda::can_dequantize(GgmlType::IQ2_XXS));
  CHECK_FALSE(cuda::can_dequantize(GgmlType::Q8_1));
  CHECK(category_of([&] { cuda::dequantize_fp16(GgmlType::IQ2_XXS, src.get(), dst.get<__half>(), 256, stream); }) ==
        ErrorCategory::UNSUPPORTED);
  CHECK(category_of([&] { cuda::dequantize_fp16(GgmlType::Q4_0, src.get(), dst.get<__half>(), 48, stream); }) ==
        ErrorCategory::INVALID_ARGUMENT);
  CHECK(category_of([&] { cuda::dequantize_bf16(GgmlType::Q6_K, src.get(), dst.get<__nv_bfloat16>(), 300, stream); }) ==
        ErrorCategory::INVALID_ARGUMENT);
  stream.sync();
  CHECK(dst.guards_intact());
  // Zero elements is a no-op, not an error.
  cuda::dequantize_fp16(GgmlType::Q4_K, src.get(), dst.get<__half>(), 0, stream);
  stream.sync();
  const auto untouched = dst.download<uint8_t>();
  CHECK(untouched[0] == GuardedBuffer::kCanary);
}

}  // namespace
}  // namespace ferry::test
