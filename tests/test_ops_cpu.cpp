// The CPU op harness: every op of ferry::cpu against the scalar reference ferry::ref, every weight type for matmul
// and embedding, odd shapes, fresh random data per case (seeds from support/seed.hpp, printed on failure), guard floats
// around every output (written outside = canary changed), outputs pre-filled with NaN (an unwritten output stays NaN)
// and NaN/Inf checks. CTest runs this twice: with the best instruction set this CPU has, and with FERRY_CPU_ISA=scalar
// (the fallback).
//
// Error metric. ggml's normalised error mse(a, b) / mse(b, 0) is unstable for a case with one output that happens to
// cancel (b ~ 0), so matmul cases use the expected output power instead: nerr = sum (a - b)^2 / sum_outputs
// sum_k (w_k x_k)^2 (for zero-mean x this is E[b^2], so nerr ~ mse/mse(b,0) on average but never blows up); ops with
// O(1) outputs (norms, RoPE, activations, attention) use mse(a, b) / mse(b, 0) directly, and so does the per-type
// pool of all matmul cases.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "../kernels/cpu/isa.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/block_layouts.hpp"
#include "ferry/kernels/cpu/cpu_ops.hpp"
#include "ferry/kernels/cpu/ops.hpp"
#include "ferry/kernels/ref/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "support/gelu_check.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

#if FERRY_CPU_X86
#include <cpuid.h>
#endif

namespace ferry {
namespace {

using test::test_seed;

const GgmlType kTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0,   GgmlType::Q4_1,
                           GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K,   GgmlType::Q3_K,
                           GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_NL, GgmlType::IQ4_XS};

bool is_float_type(GgmlType t) { return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16; }

// ---- tolerances (each with its reason) ----------------------------------------------------------------------------
// GEMV (T <= 8) of a quantized type rounds the activations to int8 per block of 32: each x_k moves by at most
// max|x_block| / 254, a uniform error of variance d^2 / 12; for uniform x in [-1, 1] (block max ~0.97) nerr is about
// 1.6e-5. 5e-4 is 30x that: room for the chi-square spread of a single 32-element dot product, while one wrong weight
// among K = 1280 (nerr ~ 1 / 1280 = 8e-4) still fails.
constexpr double kTolInt8Case = 5e-4;
// The same pooled over every shape of a type (stable statistics): 4x the expected 1.6e-5.
constexpr double kTolInt8Pooled = 6.4e-5;
// Float32 accumulation only (float weight types, the Eigen GEMM path for T > 8, and the int8 path on activations that
// are exactly representable in int8): relative error per output ~ sqrt(K) * 6e-8, so nerr ~ 1e-12 at K = 1280.
constexpr double kTolFloat = 1e-10;
// Norms, RoPE, elementwise ops: float32 rounding of O(1) outputs, ~1e-14 expected.
constexpr double kTolElementwise = 1e-11;
// Layer norm of rows with |mean| = 100 >> std: x - mean in float loses log2(100 / 0.58) ~ 7.4 bits, so ~1e-5
// relative per element; 1e-8 bounds its square with margin.
constexpr double kTolLayerNormOffset = 1e-8;
// Attention: float32 dot products, exp and accumulation over up to ~300 keys; ~1e-12 expected.
constexpr double kTolAttention = 1e-9;

// ---- guarded buffers --------------------------------------------------------------------------------------------

constexpr size_t kGuard = 16;
constexpr uint32_t kCanaryBits = 0x7fa5a5a5u;  // a NaN with a payload no kernel produces

float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// n floats with kGuard canary floats on each side. The interior starts as NaN (or as given data).
class Guarded {
 public:
  explicit Guarded(size_t n) : m_n(n), m_buf(n + 2 * kGuard, bits_to_float(kCanaryBits)) {
    for (size_t i = 0; i < n; ++i) data()[i] = std::nanf("");
  }
  explicit Guarded(const std::vector<float>& init) : Guarded(init.size()) {
    std::copy(init.begin(), init.end(), data());
  }
  float* data() { return m_buf.data() + kGuard; }
  const float* data() const { return m_buf.data() + kGuard; }
  size_t size() const { return m_n; }
  float operator[](size_t i) const { return data()[i]; }
  bool guards_intact() const {
    for (size_t i = 0; i < kGuard; ++i) {
      uint32_t lo, hi;
      std::memcpy(&lo, &m_buf[i], 4);
      std::memcpy(&hi, &m_buf[kGuard + m_n + i], 4);
      if (lo != kCanaryBits || hi != kCanaryBits) return false;
    }
    return true;
  }
  bool all_finite() const {
    for (size_t i = 0; i < m_n; ++i)
      if (!std::isfinite(data()[i])) return false;
    return true;
  }

 private:
  size_t m_n;
  std::vector<float> m_buf;
};

// Every output written, nothing outside it, nothing non-finite.
#define CHECK_OUTPUT(buf)         \
  do {                            \
    CHECK((buf).guards_intact()); \
    CHECK((buf).all_finite());    \
  } while (0)

double nmse(const Guarded& a, const Guarded& b) { return test::normalized_error(a.data(), b.data(), a.size()); }

// ---- random weights ---------------------------------------------------------------------------------------------

// Random bytes for every code, with the half-precision scale fields replaced by finite values of random sign
// (random bits there would be Inf/NaN/huge). Every code pattern of every type is exercised.
std::vector<uint8_t> random_weights(GgmlType type, int64_t rows, int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> bytes(row_bytes(type, cols) * rows);
  if (is_float_type(type)) {
    const std::vector<float> v = test::random_floats(static_cast<size_t>(rows * cols), seed);
    for (size_t i = 0; i < v.size(); ++i) {
      if (type == GgmlType::F32) {
        std::memcpy(&bytes[4 * i], &v[i], 4);
      } else {
        const uint16_t h = type == GgmlType::F16 ? fp32_to_fp16(v[i]) : fp32_to_bf16(v[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
      }
    }
    return bytes;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  std::vector<size_t> halves;
  switch (type) {
    case GgmlType::Q4_0:
      halves = {offsetof(BlockQ4_0, d)};
      break;
    case GgmlType::Q4_1:
      halves = {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
      break;
    case GgmlType::Q5_0:
      halves = {offsetof(BlockQ5_0, d)};
      break;
    case GgmlType::Q5_1:
      halves = {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
      break;
    case GgmlType::Q8_0:
      halves = {offsetof(BlockQ8_0, d)};
      break;
    case GgmlType::Q2_K:
      halves = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
      break;
    case GgmlType::Q3_K:
      halves = {offsetof(BlockQ3_K, d)};
      break;
    case GgmlType::Q4_K:
      halves = {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
      break;
    case GgmlType::Q5_K:
      halves = {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
      break;
    case GgmlType::Q6_K:
      halves = {offsetof(BlockQ6_K, d)};
      break;
    case GgmlType::IQ4_NL:
      halves = {offsetof(BlockIQ4_NL, d)};
      break;
    case GgmlType::IQ4_XS:
      halves = {offsetof(BlockIQ4_XS, d)};
      break;
    default:
      FAIL("no block layout for " << type_name(type));
  }
  const TypeTraits& t = type_traits(type);
  std::uniform_real_distribution<float> mag(0.25f, 2.0f);
  for (size_t b = 0; b < bytes.size() / t.type_size; ++b)
    for (size_t off : halves) {
      const float v = mag(rng) * (byte(rng) & 1 ? 1.0f : -1.0f) / 64.0f;
      const uint16_t h = fp32_to_fp16(v);
      std::memcpy(&bytes[b * t.type_size + off], &h, 2);
    }
  return bytes;
}

// Activations that the int8 quantizer represents exactly: n / 128 with |n| <= 127 and one |n| = 127 per block of 32,
// so every block scale is exactly 1/128 and the GEMV path has no activation error at all.
std::vector<float> int8_exact_floats(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(-127, 127);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(dist(rng)) / 128.0f;
  for (size_t b = 0; b + 32 <= n; b += 32) v[b + rng() % 32] = (rng() & 1 ? 127.0f : -127.0f) / 128.0f;
  return v;
}

// ---- matmul -----------------------------------------------------------------------------------------------------

struct MatmulError {
  double num = 0, power = 0, den = 0;  // sum (a-b)^2, sum_out sum_k (w_k x_k)^2, sum b^2
};

MatmulError run_matmul_case(GgmlType type, int64_t rows, int64_t n_tokens, int64_t k, bool exact_x, uint64_t seed) {
  const std::vector<uint8_t> w = random_weights(type, rows, k, seed);
  const std::vector<float> x = exact_x ? int8_exact_floats(static_cast<size_t>(n_tokens * k), seed + 1)
                                       : test::random_floats(static_cast<size_t>(n_tokens * k), seed + 1);
  const QuantMatrixView view{type, w.data(), k, rows};
  Guarded y_cpu(static_cast<size_t>(n_tokens * rows)), y_ref(static_cast<size_t>(n_tokens * rows));
  cpu::matmul(view, x.data(), n_tokens, y_cpu.data());
  ref::matmul(view, x.data(), n_tokens, y_ref.data());
  CHECK_OUTPUT(y_cpu);
  CHECK_OUTPUT(y_ref);
  std::vector<float> wf(static_cast<size_t>(rows * k));
  ref::dequantize(type, w.data(), wf.data(), rows * k);
  MatmulError e;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const double d = static_cast<double>(y_cpu[t * rows + r]) - y_ref[t * rows + r];
      e.num += d * d;
      e.den += static_cast<double>(y_ref[t * rows + r]) * y_ref[t * rows + r];
      for (int64_t i = 0; i < k; ++i) {
        const double p = static_cast<double>(wf[r * k + i]) * x[t * k + i];
        e.power += p * p;
      }
    }
  return e;
}

// Independently of kernels/cpu/isa.cpp: whether this CPU has everything the AVX2 variant uses.
bool cpu_has_avx2_variant() {
#if FERRY_CPU_X86
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
#else
  return false;
#endif
}

TEST_CASE("cpu ISA: the best variant this CPU supports, or the scalar one under FERRY_CPU_ISA=scalar") {
  using cpu::detail::CpuIsa;
  const CpuIsa isa = cpu::detail::active_isa();
  MESSAGE("cpu kernels run the " << std::string(cpu::detail::isa_name(isa)) << " variant");
  const char* cap = std::getenv("FERRY_CPU_ISA");
  const bool capped = cap != nullptr && std::string_view(cap) == "scalar";
  CAPTURE(cap ? cap : "(unset)");
  if (capped)
    CHECK(isa == CpuIsa::SCALAR);  // CTest's test_ops_cpu_scalar: the fallback really is what the cases below test
  else
    CHECK(isa == (cpu_has_avx2_variant() ? CpuIsa::AVX2 : CpuIsa::SCALAR));  // never more, never less than the CPU has
  CHECK(std::string(cpu::detail::isa_name(isa)) == (isa == CpuIsa::AVX2 ? "avx2" : "scalar"));

  // The GEMM tile's ISA: never above the GEMV variant's and the CPU's, capped by FERRY_CPU_ISA=avx2 or scalar.
  using cpu::detail::GemmIsa;
  const GemmIsa gemm = cpu::detail::active_gemm_isa();
  MESSAGE("cpu GEMM tiles run the " << std::string(cpu::detail::gemm_isa_name(gemm)) << " variant");
  if (isa == CpuIsa::SCALAR) CHECK(gemm == GemmIsa::BASELINE);
  if (cap != nullptr && std::string_view(cap) == "avx2") CHECK(gemm != GemmIsa::AVX512);
#if FERRY_CPU_X86
  if (gemm == GemmIsa::AVX512) CHECK(__builtin_cpu_supports("avx512f"));
  const bool capped_below_avx512 = cap != nullptr;
  if (!capped_below_avx512 && isa == CpuIsa::AVX2 && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    CHECK(gemm == GemmIsa::AVX512);  // where the build has the AVX tiles (x86-64, GCC or Clang: this build)
#endif
}

TEST_CASE("cpu::matmul matches ref::matmul for every type, odd shapes, GEMV and GEMM paths") {
  const int64_t kRows[] = {1, 5, 7, 13};
  // One kernel call (1, 3, 8), groups of 8 with and without a remainder (17, 33: the int8 path up to
  // kCpuInt8MaxTokens), and the GEMM path beyond it (67).
  const int64_t kTokens[] = {1, 3, 8, 17, 33, 67};
  static_assert(cpu::kCpuInt8MaxTokens >= 33 && cpu::kCpuInt8MaxTokens < 67);
  uint64_t seed = test_seed(1000);
  for (GgmlType type : kTypes) {
    const int64_t block = type_traits(type).block_size;
    // Block multiples; the float types (block 1) get lengths that leave vector tails.
    const std::vector<int64_t> ks =
        block == 1 ? std::vector<int64_t>{5, 37, 301} : std::vector<int64_t>{block, 3 * block, 5 * block};
    MatmulError pooled_int8;
    for (int64_t rows : kRows)
      for (int64_t tokens : kTokens)
        for (int64_t k : ks) {
          CAPTURE(type_name(type));
          CAPTURE(rows);
          CAPTURE(tokens);
          CAPTURE(k);
          CAPTURE(++seed);
          const bool int8_path = !is_float_type(type) && tokens <= cpu::kCpuInt8MaxTokens;
          const MatmulError e = run_matmul_case(type, rows, tokens, k, false, seed);
          CHECK(e.num / e.power <= (int8_path ? kTolInt8Case : kTolFloat));
          if (int8_path) {
            pooled_int8.num += e.num;
            pooled_int8.den += e.den;
            // Same shape on activations the int8 quantizer represents exactly: now only float rounding remains.
            const MatmulError exact = run_matmul_case(type, rows, tokens, k, true, seed + 7);
            CHECK(exact.num / exact.power <= kTolFloat);
          }
        }
    if (!is_float_type(type)) {
      CAPTURE(type_name(type));
      MESSAGE(type_name(type) << ": pooled GEMV normalised error " << pooled_int8.num / pooled_int8.den);
      CHECK(pooled_int8.num / pooled_int8.den <= kTolInt8Pooled);
    }
  }
}

TEST_CASE("cpu::matmul: larger shapes, many threads' worth of rows") {
  // Enough rows that oneTBB splits the GEMV and the GEMM tiles across threads and tile boundaries fall mid-matrix.
  const GgmlType kCommon[] = {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0, GgmlType::F16};
  uint64_t seed = test_seed(5000);
  for (GgmlType type : kCommon)
    for (int64_t tokens : {int64_t{1}, int64_t{2}, int64_t{9}, int64_t{33}, cpu::kCpuInt8MaxTokens,
                           cpu::kCpuInt8MaxTokens + 1, cpu::kCpuInt8MaxTokens + 3}) {
      CAPTURE(type_name(type));
      CAPTURE(tokens);
      const MatmulError e = run_matmul_case(type, 611, tokens, 1024, false, ++seed);
      const bool int8_path = !is_float_type(type) && tokens <= cpu::kCpuInt8MaxTokens;
      CHECK(e.num / e.den <= (int8_path ? kTolInt8Pooled : kTolFloat));
    }
}

TEST_CASE("cpu::matmul: empty calls write nothing; bad arguments are refused") {
  const std::vector<uint8_t> w = random_weights(GgmlType::Q4_0, 3, 64, test_seed(1));
  const std::vector<float> x = test::random_floats(64, test_seed(2));
  Guarded y(3);
  cpu::matmul({GgmlType::Q4_0, w.data(), 64, 3}, x.data(), 0, y.data());
  CHECK(y.guards_intact());
  CHECK(std::isnan(y[0]));  // untouched
  auto category_of = [&](const QuantMatrixView& v) {
    try {
      cpu::matmul(v, x.data(), 1, y.data());
    } catch (const Error& e) {
      return e.category();
    }
    return ErrorCategory::INTERNAL;
  };
  CHECK(category_of({GgmlType::Q4_0, w.data(), 48, 1}) == ErrorCategory::INVALID_ARGUMENT);  // 48 % 32 != 0
  CHECK(category_of({GgmlType::IQ2_XXS, w.data(), 256, 1}) == ErrorCategory::UNSUPPORTED);
  CHECK(category_of({GgmlType::Q4_0, nullptr, 64, 1}) == ErrorCategory::INVALID_ARGUMENT);
}

// ---- dequantize and embedding -------------------------------------------------------------------------------------

TEST_CASE("cpu::dequantize equals ref::dequantize bit for bit") {
  uint64_t seed = test_seed(7000);
  for (GgmlType type : kTypes) {
    const int64_t block = type_traits(type).block_size;
    // The last length exceeds one parallel chunk (2^18 elements), so the oneTBB split and its seams are covered.
    for (int64_t n : {block, 7 * block, 13 * block + (block == 1 ? 5 : 0), int64_t{600} * 1024}) {
      CAPTURE(type_name(type));
      CAPTURE(n);
      CAPTURE(++seed);
      const std::vector<uint8_t> w = random_weights(type, 1, n, seed);
      Guarded a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
      cpu::dequantize(type, w.data(), a.data(), n);
      ref::dequantize(type, w.data(), b.data(), n);
      CHECK(a.guards_intact());
      CHECK(std::memcmp(a.data(), b.data(), static_cast<size_t>(n) * 4) == 0);
    }
  }
  // Every half and bfloat16 bit pattern, NaNs, infinities and subnormals included.
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (GgmlType type : {GgmlType::F16, GgmlType::BF16}) {
    CAPTURE(type_name(type));
    std::vector<float> a(all.size()), b(all.size());
    cpu::dequantize(type, all.data(), a.data(), static_cast<int64_t>(all.size()));
    ref::dequantize(type, all.data(), b.data(), static_cast<int64_t>(all.size()));
    CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  }
  CHECK_THROWS_AS(cpu::dequantize(GgmlType::Q4_K, all.data(), nullptr, 100), Error);
}

TEST_CASE("cpu::embedding_lookup equals ref for every type; bad ids are refused") {
  uint64_t seed = test_seed(9000);
  for (GgmlType type : kTypes) {
    const int64_t block = type_traits(type).block_size;
    const int64_t cols = block == 1 ? 37 : 3 * block, vocab = 13;
    CAPTURE(type_name(type));
    const std::vector<uint8_t> table = random_weights(type, vocab, cols, ++seed);
    const std::vector<int32_t> ids = {0, 12, 5, 5, 7, 1, 11};  // first, last, a repeat
    const QuantMatrixView view{type, table.data(), cols, vocab};
    Guarded a(ids.size() * cols), b(ids.size() * cols);
    cpu::embedding_lookup(view, ids.data(), static_cast<int64_t>(ids.size()), a.data());
    ref::embedding_lookup(view, ids.data(), static_cast<int64_t>(ids.size()), b.data());
    CHECK_OUTPUT(a);
    CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);  // a pure dequantization: exact
    const int32_t bad[] = {3, 13};
    CHECK_THROWS_AS(cpu::embedding_lookup(view, bad, 2, a.data()), Error);
    const int32_t negative[] = {-1};
    CHECK_THROWS_AS(cpu::embedding_lookup(view, negative, 1, a.data()), Error);
  }
}

// ---- norms, RoPE, elementwise -------------------------------------------------------------------------------------

TEST_CASE("cpu norms match ref") {
  uint64_t seed = test_seed(11000);
  for (int64_t rows : {1, 5, 7, 13})
    for (int64_t n : {1, 7, 64, 1000, 4099}) {
      CAPTURE(rows);
      CAPTURE(n);
      CAPTURE(++seed);
      const std::vector<float> x = test::random_floats(static_cast<size_t>(rows * n), seed, -3.0f, 3.0f);
      const std::vector<float> w = test::random_floats(static_cast<size_t>(n), seed + 1, 0.5f, 1.5f);
      for (const float* weight : {w.data(), static_cast<const float*>(nullptr)}) {
        Guarded a(x.size()), b(x.size());
        cpu::rms_norm(x.data(), weight, a.data(), rows, n, 1e-6f);
        ref::rms_norm(x.data(), weight, b.data(), rows, n, 1e-6f);
        CHECK_OUTPUT(a);
        CHECK(nmse(a, b) <= kTolElementwise);
      }
      Guarded a(x.size()), b(x.size());
      cpu::layer_norm(x.data(), a.data(), rows, n, 1e-6f);
      ref::layer_norm(x.data(), b.data(), rows, n, 1e-6f);
      CHECK_OUTPUT(a);
      CHECK(nmse(a, b) <= kTolElementwise);
      if (n > 1) {  // a large common offset: the one-pass E[x^2] - E[x]^2 formula would fail here
        std::vector<float> shifted = x;
        for (float& v : shifted) v = v / 3.0f + 100.0f;
        Guarded c(x.size()), d(x.size());
        cpu::layer_norm(shifted.data(), c.data(), rows, n, 1e-6f);
        ref::layer_norm(shifted.data(), d.data(), rows, n, 1e-6f);
        CHECK_OUTPUT(c);
        CHECK(nmse(c, d) <= kTolLayerNormOffset);
      }
    }
}

TEST_CASE("cpu::rope and cpu::rope_multi_axis match ref") {
  uint64_t seed = test_seed(13000);
  std::mt19937_64 rng(test_seed(1));
  for (RopeMode mode : {RopeMode::ADJACENT, RopeMode::HALF_SPLIT})
    for (int64_t tokens : {1, 5, 33})
      for (int64_t heads : {1, 3, 7})
        for (int64_t head_dim : {2, 64, 128}) {
          CAPTURE(static_cast<int>(mode));
          CAPTURE(tokens);
          CAPTURE(heads);
          CAPTURE(head_dim);
          CAPTURE(++seed);
          const std::vector<float> x = test::random_floats(static_cast<size_t>(tokens * heads * head_dim), seed);
          std::vector<int32_t> pos(static_cast<size_t>(tokens));
          for (auto& p : pos) p = static_cast<int32_t>(rng() % 32768);
          Guarded a(x), b(x);
          const float base = head_dim == 64 ? 500000.0f : 10000.0f;
          cpu::rope(a.data(), tokens, heads, head_dim, pos.data(), base, mode);
          ref::rope(b.data(), tokens, heads, head_dim, pos.data(), base, mode);
          CHECK_OUTPUT(a);
          CHECK(nmse(a, b) <= kTolElementwise);
        }
  // Flux: head_dim 128 = 16 + 56 + 56; and a small split with odd counts.
  const std::vector<std::vector<int32_t>> kAxes = {{16, 56, 56}, {2, 4}, {6}};
  for (const auto& axes : kAxes)
    for (int64_t tokens : {1, 7, 33}) {
      int64_t head_dim = 0;
      for (int32_t a : axes) head_dim += a;
      const int64_t heads = 3;
      CAPTURE(head_dim);
      CAPTURE(tokens);
      const std::vector<float> x = test::random_floats(static_cast<size_t>(tokens * heads * head_dim), ++seed);
      const std::vector<float> pos =
          test::random_floats(static_cast<size_t>(tokens) * axes.size(), seed + 1, 0.0f, 64.0f);
      Guarded a(x), b(x);
      const auto n_axes = static_cast<int32_t>(axes.size());
      cpu::rope_multi_axis(a.data(), tokens, heads, head_dim, pos.data(), axes.data(), n_axes, 10000.0f);
      ref::rope_multi_axis(b.data(), tokens, heads, head_dim, pos.data(), axes.data(), n_axes, 10000.0f);
      CHECK_OUTPUT(a);
      CHECK(nmse(a, b) <= kTolElementwise);
    }
  std::vector<float> x(2 * 2 * 6, 1.0f);
  const int32_t pos[] = {0, 1}, bad_axes[] = {2, 2};
  CHECK_THROWS_AS(cpu::rope(x.data(), 2, 2, 5, pos, 10000.0f, RopeMode::ADJACENT), Error);  // odd head_dim
  const float fpos[] = {0, 0, 0, 0};
  CHECK_THROWS_AS(cpu::rope_multi_axis(x.data(), 2, 2, 6, fpos, bad_axes, 2, 10000.0f), Error);  // 2 + 2 != 6
}

TEST_CASE("cpu elementwise ops match ref") {
  uint64_t seed = test_seed(15000);
  // 100003 elements exceed the parallel threshold, so the chunked oneTBB path runs too.
  for (int64_t n : {1, 7, 4099, 100003}) {
    CAPTURE(n);
    CAPTURE(++seed);
    const auto un = static_cast<size_t>(n);
    const std::vector<float> g = test::random_floats(un, seed, -10.0f, 10.0f);
    const std::vector<float> u = test::random_floats(un, seed + 1, -2.0f, 2.0f);
    {
      Guarded a(un), b(un);
      cpu::silu_mul(g.data(), u.data(), a.data(), n);
      ref::silu_mul(g.data(), u.data(), b.data(), n);
      CHECK_OUTPUT(a);
      CHECK(nmse(a, b) <= kTolElementwise);
    }
    {  // per element against the function's own conditioning (support/gelu_check.hpp), not kTolElementwise
      Guarded a(un), b(un);
      cpu::gelu_tanh(g.data(), a.data(), n);
      ref::gelu_tanh(g.data(), b.data(), n);
      CHECK_OUTPUT(a);
      size_t first = 0;
      const size_t outside = test::gelu_tanh_outside_bound(g.data(), a.data(), b.data(), un, &first);
      INFO("first outside the bound: x = " << g[first] << ", got " << a[first] << ", reference " << b[first]);
      CHECK(outside == 0);
    }
    {
      Guarded a(un), b(un);
      cpu::add(g.data(), u.data(), a.data(), n);
      ref::add(g.data(), u.data(), b.data(), n);
      CHECK_OUTPUT(a);
      CHECK(nmse(a, b) <= kTolElementwise);
    }
  }
  // GELU's negative tail: outputs of -4e-3 down to ~-1e-28 keep their relative precision (no 1 + tanh cancellation),
  // element by element: a normalised error would be dominated by the largest outputs and miss the tail.
  for (int64_t n : {1, 7, 1000}) {
    CAPTURE(n);
    CAPTURE(++seed);
    const std::vector<float> g = test::random_floats(static_cast<size_t>(n), seed, -9.0f, -3.0f);
    Guarded a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    cpu::gelu_tanh(g.data(), a.data(), n);
    ref::gelu_tanh(g.data(), b.data(), n);
    CHECK_OUTPUT(a);
    size_t first = 0;
    const size_t outside = test::gelu_tanh_outside_bound(g.data(), a.data(), b.data(), static_cast<size_t>(n), &first);
    INFO("first outside the bound: x = " << g[first] << ", got " << a[first] << ", reference " << b[first]);
    CHECK(outside == 0);
  }
  for (int64_t rows : {1, 5, 13, 300})
    for (int64_t n : {7, 64, 333}) {
      CAPTURE(rows);
      CAPTURE(n);
      CAPTURE(++seed);
      const std::vector<float> x = test::random_floats(static_cast<size_t>(rows * n), seed);
      const std::vector<float> shift = test::random_floats(static_cast<size_t>(n), seed + 1);
      const std::vector<float> scale = test::random_floats(static_cast<size_t>(n), seed + 2);
      Guarded a(x.size()), b(x.size());
      cpu::modulate(x.data(), shift.data(), scale.data(), a.data(), rows, n);
      ref::modulate(x.data(), shift.data(), scale.data(), b.data(), rows, n);
      CHECK_OUTPUT(a);
      CHECK(nmse(a, b) <= kTolElementwise);
      const std::vector<float> residual = test::random_floats(x.size(), seed + 3);
      Guarded c(residual), d(residual);
      cpu::gated_add(c.data(), scale.data(), x.data(), rows, n);
      ref::gated_add(d.data(), scale.data(), x.data(), rows, n);
      CHECK_OUTPUT(c);
      CHECK(nmse(c, d) <= kTolElementwise);
      Guarded e(x.size()), f(x);  // out of place, and in place (y = x) as the blocks call it
      cpu::add_bias(x.data(), shift.data(), e.data(), rows, n);
      cpu::add_bias(f.data(), shift.data(), f.data(), rows, n);
      ref::add_bias(x.data(), shift.data(), b.data(), rows, n);
      CHECK_OUTPUT(e);
      CHECK_OUTPUT(f);
      CHECK(nmse(e, b) <= kTolElementwise);
      CHECK(nmse(f, b) <= kTolElementwise);
    }
}

TEST_CASE("ref::gelu_tanh is accurate in the far negative tail (the oracle must beat the kernels there)") {
  // An independent evaluation in long double and in another algebraic form, x·e^(2u) / (1 + e^(2u)) (e^(2u) is tiny
  // here, so nothing cancels). x in [-12, -5] covers outputs from -3e-6 through the subnormals to an underflow to -0.
  // The reference rounds its result to float once: it must be within one float ulp of the exact value (relative
  // 2^-23 for normal outputs, 2^-149 absolute for subnormal ones). 0.5·x·(1 + tanh(u)) in double, the old formula,
  // returns 0 from x ~ -6 on (tanh(u) rounds to -1) and fails by a factor of 1e7 and more.
  const uint64_t seed = test_seed(19000);
  CAPTURE(seed);
  std::vector<float> x = test::random_floats(20000, seed, -12.0f, -5.0f);
  x.push_back(-5.0f);
  x.push_back(-12.0f);
  std::vector<float> y(x.size());
  ref::gelu_tanh(x.data(), y.data(), static_cast<int64_t>(x.size()));
  const long double k = std::sqrt(2.0L / 3.141592653589793238462643383279502884L);
  size_t wrong = 0, normal = 0, subnormal = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const long double v = x[i];
    const long double e = std::exp(2.0L * k * (v + 0.044715L * v * v * v));
    const long double exact = v * e / (1.0L + e);
    const long double bound = std::max(std::ldexp(std::fabs(exact), -23), std::ldexp(1.0L, -149));
    if (!(std::fabs(static_cast<long double>(y[i]) - exact) <= bound)) {
      if (wrong++ == 0) MESSAGE("x = " << x[i] << ": reference " << y[i] << ", exact " << static_cast<double>(exact));
    }
    normal += std::fabs(exact) >= std::numeric_limits<float>::min();
    subnormal += std::fabs(exact) < std::numeric_limits<float>::min() &&
                 std::fabs(exact) >= std::numeric_limits<float>::denorm_min();
  }
  CHECK(wrong == 0);
  CHECK(normal > 1000);  // the range really holds both kinds of output
  CHECK(subnormal > 100);
}

// ---- attention ----------------------------------------------------------------------------------------------------

std::vector<uint16_t> random_halves(size_t n, uint64_t seed) {
  const std::vector<float> v = test::random_floats(n, seed);
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = fp32_to_fp16(v[i]);
  return h;
}

TEST_CASE("cpu::attention matches ref: causal and not, GQA 1/2/4, decode and prefill") {
  struct Case {
    int64_t n_q, n_kv, n_head, n_kv_head, head_dim, q_pos0;
    bool causal;
    float q_gain;  // scales q: 8 makes scores span ~+-60, where a softmax without the max subtracted overflows
  };
  const Case kCases[] = {
      {1, 1, 4, 4, 64, 0, true, 1},       // decode of the first token, GQA 1
      {1, 257, 8, 4, 64, 256, true, 1},   // decode at the end of the cache, GQA 2
      {1, 300, 8, 2, 128, 150, true, 8},  // decode in the middle of the cache, GQA 4, large scores
      {1, 77, 6, 6, 20, 0, false, 1},     // not causal; head_dim 20 leaves vector tails
      {33, 33, 4, 4, 64, 0, true, 1},     // prefill from position 0
      {33, 290, 8, 2, 64, 257, true, 8},  // prefill after a 257-token prefix, GQA 4, large scores
      {33, 65, 8, 4, 40, 0, false, 8},    // not causal, GQA 2, head_dim 40
      {5, 129, 12, 3, 64, 124, true, 1},  // GQA 4, 12 heads
      {33, 300, 4, 1, 128, 0, false, 1},  // one KV head for all (multi-query)
      {7, 7, 2, 1, 8, 0, true, 1},        // tiny head_dim
  };
  uint64_t seed = test_seed(17000);
  for (const Case& c : kCases) {
    CAPTURE(c.n_q);
    CAPTURE(c.n_kv);
    CAPTURE(c.n_head);
    CAPTURE(c.n_kv_head);
    CAPTURE(c.head_dim);
    CAPTURE(c.q_pos0);
    CAPTURE(c.causal);
    CAPTURE(++seed);
    const AttentionShape s{c.n_q,      c.n_kv,   c.n_head, c.n_kv_head,
                           c.head_dim, c.q_pos0, c.causal, 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
    std::vector<float> q = test::random_floats(static_cast<size_t>(c.n_q * c.n_head * c.head_dim), seed);
    for (float& v : q) v *= c.q_gain;
    const auto kv_n = static_cast<size_t>(c.n_kv * c.n_kv_head * c.head_dim);
    const std::vector<uint16_t> k = random_halves(kv_n, seed + 1), v = random_halves(kv_n, seed + 2);
    Guarded a(q.size()), b(q.size());
    cpu::attention(s, q.data(), k.data(), v.data(), a.data());
    ref::attention(s, q.data(), k.data(), v.data(), b.data());
    CHECK_OUTPUT(a);
    CHECK(nmse(a, b) <= kTolAttention);
  }
  std::vector<float> q(64), out(64);
  std::vector<uint16_t> kv(64);
  CHECK_THROWS_AS(cpu::attention({1, 1, 3, 2, 16, 0, false, 1.0f}, q.data(), kv.data(), kv.data(), out.data()),
                  Error);  // 3 heads over 2 KV heads
  CHECK_THROWS_AS(cpu::attention({2, 2, 1, 1, 16, 1, true, 1.0f}, q.data(), kv.data(), kv.data(), out.data()),
                  Error);  // causal query at position 2 with only 2 keys
}

}  // namespace
TEST_CASE("Ops' composite ops are, by default, exactly the sequences they stand for (CpuOps)") {
  // The CPU runs the composites through Ops' defaults (a GPU with fused ops replaces them): each must give bit for
  // bit what its sequence of plain ops gives, on random data, at a prompt-sized and a decode-sized step.
  CpuOps ops;
  uint64_t seed = test_seed(7700);
  const int64_t k = 3 * 256, rows[] = {37, 5, 21};
  for (int64_t t : {1, 3, 17}) {
    CAPTURE(t);
    std::vector<std::vector<uint8_t>> w(3);
    std::vector<QuantMatrixView> views;
    for (size_t m = 0; m < 3; ++m) {
      const auto f = test::random_floats(static_cast<size_t>(rows[m] * k), ++seed);
      w[m].resize(row_bytes(GgmlType::Q4_K, rows[m] * k));
      ref::quantize(GgmlType::Q4_K, f.data(), w[m].data(), rows[m] * k);
      views.push_back({GgmlType::Q4_K, w[m].data(), k, rows[m]});
    }
    const auto x = test::random_floats(static_cast<size_t>(t * k), ++seed);
    const auto norm_weight = test::random_floats(static_cast<size_t>(k), ++seed, 0.5f, 1.5f);
    auto outputs = [&] {
      std::vector<std::vector<float>> ys;
      for (int64_t r : rows) ys.emplace_back(static_cast<size_t>(t * r), std::numeric_limits<float>::quiet_NaN());
      return ys;
    };
    auto pointers = [](std::vector<std::vector<float>>& ys) {
      std::vector<float*> p;
      for (auto& y : ys) p.push_back(y.data());
      return p;
    };
    {  // rms_norm_matmul_batch
      auto composite = outputs(), sequence = outputs();
      std::vector<float> xn(x.size()), xn2(x.size());
      ops.rms_norm_matmul_batch(x.data(), norm_weight.data(), 1e-5f, views, t, pointers(composite), xn.data());
      ops.rms_norm(x.data(), norm_weight.data(), xn2.data(), t, k, 1e-5f);
      ops.matmul_batch(views, xn2.data(), t, pointers(sequence));
      CHECK(composite == sequence);
    }
    {  // matmul_add and swiglu_matmul_add into a residual stream of width 37 (the first matrix's rows)
      const QuantMatrixView& wo = views[0];
      const auto residual = test::random_floats(static_cast<size_t>(t * wo.n_rows), ++seed);
      std::vector<float> a = residual, b = residual, tmp(residual.size()), tmp2(residual.size());
      ops.matmul_add(wo, x.data(), t, a.data(), tmp.data());
      ops.matmul(wo, x.data(), t, tmp2.data());
      ops.add(b.data(), tmp2.data(), b.data(), static_cast<int64_t>(b.size()));
      CHECK(a == b);
      const auto up = test::random_floats(x.size(), ++seed);
      std::vector<float> gate = x, gate2 = x;
      ops.swiglu_matmul_add(wo, gate.data(), up.data(), t, a.data(), tmp.data());
      ops.silu_mul(gate2.data(), up.data(), gate2.data(), static_cast<int64_t>(gate2.size()));
      ops.matmul(wo, gate2.data(), t, tmp2.data());
      ops.add(b.data(), tmp2.data(), b.data(), static_cast<int64_t>(b.size()));
      CHECK(a == b);
    }
    {  // rope_store_kv: 6 query heads, 2 KV heads of 64, rows 5 .. 5 + t - 1 of a cache of t + 9
      const int64_t n_head = 6, n_kv = 2, head_dim = 64, row = n_kv * head_dim, pos0 = 5, capacity = t + 9;
      const auto q = test::random_floats(static_cast<size_t>(t * n_head * head_dim), ++seed);
      const auto kk = test::random_floats(static_cast<size_t>(t * row), ++seed);
      const auto v = test::random_floats(static_cast<size_t>(t * row), ++seed);
      for (RopeMode mode : {RopeMode::ADJACENT, RopeMode::HALF_SPLIT}) {
        std::vector<float> q1 = q, k1 = kk, q2 = q, k2 = kk;
        std::vector<uint16_t> kc1(static_cast<size_t>(capacity * row), 0x7e00), vc1 = kc1, kc2 = kc1, vc2 = kc1;
        std::vector<int32_t> pos1(static_cast<size_t>(t)), pos2(static_cast<size_t>(t));
        ops.rope_store_kv(q1.data(), k1.data(), v.data(), t, n_head, n_kv, head_dim, pos0, 10000.0f, mode, kc1.data(),
                          vc1.data(), capacity, pos1.data());
        ops.positions(pos2.data(), t, pos0);
        ops.rope(q2.data(), t, n_head, head_dim, pos2.data(), 10000.0f, mode);
        ops.rope(k2.data(), t, n_kv, head_dim, pos2.data(), 10000.0f, mode);
        ops.store_kv(k2.data(), v.data(), kc2.data(), vc2.data(), t, pos0, row, capacity);
        CHECK(q1 == q2);
        CHECK(kc1 == kc2);
        CHECK(vc1 == vc2);
        CHECK(kc1 != std::vector<uint16_t>(kc1.size(), 0x7e00));  // the step's rows were written
      }
    }
  }
}

}  // namespace ferry
