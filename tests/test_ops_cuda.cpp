// The CUDA transformer ops (kernels/cuda) against the scalar reference (ferry::ref): norms, RoPE, element-wise ops,
// embedding lookup, the KV-cache write and attention on both of its paths.
// Every check uses fresh random data (seeds from support/seed.hpp: fixed by default, the base printed at start,
// FERRY_TEST_SEED=N replays or varies a run), odd shapes, outputs pre-filled with NaN (an element the kernel forgets to
// write fails the NaN check), guard bytes on both sides of every device buffer a kernel writes (checked after the
// call), and a normalised error mse(got, ref) / mse(ref, 0) against a tolerance whose reason is written beside it.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_helpers.hpp"
#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/elementwise.cuh"
#include "ferry/kernels/cuda/embedding.cuh"
#include "ferry/kernels/cuda/host_read.cuh"
#include "ferry/kernels/cuda/norm.cuh"
#include "ferry/kernels/cuda/positions.cuh"
#include "ferry/kernels/cuda/rope.cuh"
#include "ferry/kernels/ref/ops.hpp"
#include "support/gelu_check.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

using namespace ferry;

namespace {

using test::GuardedBuffer;

// Float kernels are compared in FP32 against a double reference: per-element relative errors of a few ulps (~1e-6 at
// worst) give a normalised (squared) error near 1e-13; 1e-10 leaves a wide margin while an indexing or masking bug
// lands near 1. GELU is checked element by element against its own conditioning instead (support/gelu_check.hpp).
constexpr double kFp32Tolerance = 1e-10;

// Consecutive seeds from test_seed(salt): each test case has its own salt, so its data do not depend on which other
// test cases ran before it (a case selected with -tc replays exactly).
class Seeds {
 public:
  explicit Seeds(uint64_t salt) : m_next(test::test_seed(salt)) {}
  uint64_t next() { return m_next++; }

 private:
  uint64_t m_next;
};

// An output buffer pre-filled with NaN, so an element the kernel never writes fails the NaN check.
GuardedBuffer nan_output(size_t n) {
  return GuardedBuffer(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()));
}

// The tests' stream is non-blocking, like the library's: GuardedBuffer's copies synchronise with it explicitly.
struct Gpu {
  test::Stream stream;
  test::Cublas cublas;
  void sync() { stream.sync(); }
};

int compute_capability_major() {
  int device = 0, major = 0;
  FERRY_CUDA_CHECK(cudaGetDevice(&device));
  FERRY_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  return major;
}

size_t count_non_finite(const std::vector<float>& v) {
  size_t n = 0;
  for (float x : v) n += std::isfinite(x) ? 0 : 1;
  return n;
}

// The largest error seen per tolerance, printed at exit: how much margin each written-down tolerance has.
struct ErrorLedger {
  std::map<double, double> worst;
  ~ErrorLedger() {
    for (const auto& [tol, err] : worst)
      std::printf("test_ops_cuda: tolerance %.1e: largest normalised error %.3e\n", tol, err);
  }
};
ErrorLedger g_ledger;

// The reference outputs here are finite, so any non-finite output is a bug; then the normalised error.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tolerance) {
  REQUIRE(got.size() == ref.size());
  CHECK(count_non_finite(got) == 0);
  const double err = test::normalized_error(got, ref, ref.size());
  double& worst = g_ledger.worst[tolerance];
  worst = std::max(worst, err);
  INFO("normalised error " << err << ", tolerance " << tolerance);
  CHECK(err <= tolerance);
}

// GELU element by element against the bound of support/gelu_check.hpp, which follows the function's conditioning in
// the negative tail (where one element alone can exceed kFp32Tolerance's normalised error without any kernel fault).
void expect_gelu_close(const float* x, const std::vector<float>& got, const std::vector<float>& ref) {
  REQUIRE(got.size() == ref.size());
  CHECK(count_non_finite(got) == 0);
  size_t first = 0;
  const size_t outside = test::gelu_tanh_outside_bound(x, got.data(), ref.data(), ref.size(), &first);
  INFO(outside << " elements outside the bound; first: x = " << x[first] << ", got " << got[first] << ", reference "
               << ref[first]);
  CHECK(outside == 0);
}

std::vector<uint16_t> to_fp16(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = fp32_to_fp16(v[i]);
  return h;
}

}  // namespace

TEST_CASE("cuda rms_norm and layer_norm match the reference") {
  Seeds seeds(21000);
  Gpu gpu;
  // n <= 1024 takes the warp-per-row kernel, above it the block-per-row kernel; 1 and 37 are not multiples of 32.
  for (int64_t rows : {1, 5, 7, 13}) {
    for (int64_t n : {1, 37, 128, 1000, 1025, 4097}) {
      for (bool weighted : {false, true}) {
        const uint64_t seed = seeds.next();
        CAPTURE(rows);
        CAPTURE(n);
        CAPTURE(weighted);
        CAPTURE(seed);
        const size_t count = static_cast<size_t>(rows * n);
        const std::vector<float> x = test::random_floats(count, seed, -2.0f, 2.0f);
        const std::vector<float> w = test::random_floats(static_cast<size_t>(n), seed + 1, 0.5f, 1.5f);
        std::vector<float> ref(count);
        ref::rms_norm(x.data(), weighted ? w.data() : nullptr, ref.data(), rows, n, 1e-5f);
        GuardedBuffer dx(x), dw(w);
        GuardedBuffer dy = nan_output(count);
        cuda::rms_norm(dx.get<float>(), weighted ? dw.get<float>() : nullptr, dy.get<float>(), rows, n, 1e-5f,
                       gpu.stream);
        gpu.sync();
        expect_close(dy.download<float>(count), ref, kFp32Tolerance);
        CHECK(dy.guards_intact());

        // LayerNorm on rows with a large mean (3 +- 1): the two-pass variance must not cancel.
        const std::vector<float> xl = test::random_floats(count, seed + 2, 2.0f, 4.0f);
        ref::layer_norm(xl.data(), ref.data(), rows, n, 1e-6f);
        GuardedBuffer dxl(xl);
        GuardedBuffer dyl = nan_output(count);
        cuda::layer_norm(dxl.get<float>(), dyl.get<float>(), rows, n, 1e-6f, gpu.stream);
        gpu.sync();
        expect_close(dyl.download<float>(count), ref, kFp32Tolerance);
        CHECK(dyl.guards_intact());
      }
    }
  }
  {  // in place
    const uint64_t seed = seeds.next();
    CAPTURE(seed);
    const int64_t rows = 7, n = 3001;
    const std::vector<float> x = test::random_floats(rows * n, seed, -3.0f, 3.0f);
    const std::vector<float> w = test::random_floats(n, seed + 1, -1.0f, 1.0f);
    std::vector<float> ref(x.size());
    ref::rms_norm(x.data(), w.data(), ref.data(), rows, n, 1e-5f);
    GuardedBuffer dx(x), dw(w);
    cuda::rms_norm(dx.get<float>(), dw.get<float>(), dx.get<float>(), rows, n, 1e-5f, gpu.stream);
    gpu.sync();
    expect_close(dx.download<float>(x.size()), ref, kFp32Tolerance);
    CHECK(dx.guards_intact());
  }
  {  // bad shapes are refused
    CHECK_THROWS_AS(cuda::rms_norm(nullptr, nullptr, nullptr, -1, 4, 1e-5f, gpu.stream), Error);
    CHECK_THROWS_AS(cuda::layer_norm(nullptr, nullptr, 3, 4, 1e-5f, gpu.stream), Error);
  }
}

TEST_CASE("cuda rope matches the reference in both pair layouts") {
  Seeds seeds(22000);
  Gpu gpu;
  for (int64_t n_tokens : {1, 3, 8, 33}) {
    for (int64_t n_head : {1, 5, 7}) {
      for (int64_t head_dim : {18, 80, 128}) {
        for (RopeMode mode : {RopeMode::ADJACENT, RopeMode::HALF_SPLIT}) {
          const uint64_t seed = seeds.next();
          CAPTURE(n_tokens);
          CAPTURE(n_head);
          CAPTURE(head_dim);
          CAPTURE(static_cast<int>(mode));
          CAPTURE(seed);
          const size_t count = static_cast<size_t>(n_tokens * n_head * head_dim);
          const std::vector<float> x = test::random_floats(count, seed, -1.0f, 1.0f);
          // Positions up to 100000 with llama-3's base: a float angle would be off by ~1e-2 rad there.
          std::mt19937_64 rng(seed + 1);
          std::uniform_int_distribution<int32_t> pos_dist(0, 100000);
          std::vector<int32_t> pos(static_cast<size_t>(n_tokens));
          for (auto& p : pos) p = pos_dist(rng);
          const float base = seed % 2 ? 10000.0f : 500000.0f;
          std::vector<float> ref = x;
          ref::rope(ref.data(), n_tokens, n_head, head_dim, pos.data(), base, mode);
          GuardedBuffer dx(x), dpos(pos);
          cuda::rope(dx.get<float>(), n_tokens, n_head, head_dim, dpos.get<int32_t>(), base, mode, gpu.stream);
          gpu.sync();
          expect_close(dx.download<float>(count), ref, kFp32Tolerance);
          CHECK(dx.guards_intact());
        }
      }
    }
  }
  {  // bad shapes are refused
    CHECK_THROWS_AS(cuda::rope(nullptr, 1, 1, 7, nullptr, 1e4f, RopeMode::ADJACENT, gpu.stream), Error);
    CHECK_THROWS_AS(cuda::rope(nullptr, 1, 1, 1024, nullptr, 1e4f, RopeMode::ADJACENT, gpu.stream), Error);
  }
}

TEST_CASE("cuda rope_multi_axis matches the reference (Flux)") {
  Seeds seeds(23000);
  Gpu gpu;
  struct Axes {
    std::vector<int32_t> dims;
    int64_t head_dim;
  };
  for (const Axes& axes : {Axes{{16, 56, 56}, 128}, Axes{{4, 6, 8}, 18}, Axes{{10}, 10}}) {
    for (int64_t n_tokens : {1, 3, 8, 33}) {
      for (int64_t n_head : {1, 5}) {
        const uint64_t seed = seeds.next();
        CAPTURE(axes.head_dim);
        CAPTURE(n_tokens);
        CAPTURE(n_head);
        CAPTURE(seed);
        const auto n_axes = static_cast<int32_t>(axes.dims.size());
        const size_t count = static_cast<size_t>(n_tokens * n_head * axes.head_dim);
        const std::vector<float> x = test::random_floats(count, seed, -1.0f, 1.0f);
        // Flux's ids are small integers stored as floats; fractional values test the float path too.
        const std::vector<float> pos =
            test::random_floats(static_cast<size_t>(n_tokens * n_axes), seed + 1, 0.0f, 96.0f);
        std::vector<float> ref = x;
        ref::rope_multi_axis(ref.data(), n_tokens, n_head, axes.head_dim, pos.data(), axes.dims.data(), n_axes,
                             10000.0f);
        GuardedBuffer dx(x), dpos(pos);
        cuda::rope_multi_axis(dx.get<float>(), n_tokens, n_head, axes.head_dim, dpos.get<float>(), axes.dims.data(),
                              n_axes, 10000.0f, gpu.stream);
        gpu.sync();
        expect_close(dx.download<float>(count), ref, kFp32Tolerance);
        CHECK(dx.guards_intact());
      }
    }
  }
  const int32_t bad_axes[] = {16, 56, 54};  // sums to 126, not 128
  CHECK_THROWS_AS(cuda::rope_multi_axis(nullptr, 1, 1, 128, nullptr, bad_axes, 3, 1e4f, gpu.stream), Error);
}

TEST_CASE("cuda element-wise ops match the reference") {
  Seeds seeds(24000);
  Gpu gpu;
  // offset 1 shifts every pointer by one float: the kernels must fall back from float4 to scalar accesses.
  for (int64_t n : {1, 37, 1000, 4099, 100003}) {
    for (int64_t offset : {0, 1}) {
      const uint64_t seed = seeds.next();
      CAPTURE(n);
      CAPTURE(offset);
      CAPTURE(seed);
      const size_t count = static_cast<size_t>(n), o = static_cast<size_t>(offset);
      const std::vector<float> a = test::random_floats(count + o, seed, -8.0f, 8.0f);
      const std::vector<float> b = test::random_floats(count + o, seed + 1, -2.0f, 2.0f);
      GuardedBuffer da(a), db(b);
      const float* pa = da.get<float>() + o;
      const float* pb = db.get<float>() + o;
      std::vector<float> ref(count);
      auto run = [&](const char* name, auto&& ref_fn, auto&& gpu_fn, auto&& compare) {
        CAPTURE(name);
        ref_fn(ref.data());
        GuardedBuffer dy = nan_output(count + o);
        gpu_fn(dy.get<float>() + o);
        gpu.sync();
        const std::vector<float> got = dy.download<float>(count + o);
        compare(std::vector<float>(got.begin() + offset, got.end()));
        CHECK(dy.guards_intact());
      };
      const auto fp32_close = [&](const std::vector<float>& got) { expect_close(got, ref, kFp32Tolerance); };
      run(
          "silu_mul", [&](float* y) { ref::silu_mul(a.data() + o, b.data() + o, y, n); },
          [&](float* y) { cuda::silu_mul(pa, pb, y, n, gpu.stream); }, fp32_close);
      run(
          "gelu_tanh", [&](float* y) { ref::gelu_tanh(a.data() + o, y, n); },
          [&](float* y) { cuda::gelu_tanh(pa, y, n, gpu.stream); },
          [&](const std::vector<float>& got) { expect_gelu_close(a.data() + o, got, ref); });
      run(
          "add", [&](float* y) { ref::add(a.data() + o, b.data() + o, y, n); },
          [&](float* y) { cuda::add(pa, pb, y, n, gpu.stream); }, fp32_close);
    }
  }
  {  // add in place
    const uint64_t seed = seeds.next();
    CAPTURE(seed);
    const int64_t n = 5003;
    const std::vector<float> a = test::random_floats(n, seed), b = test::random_floats(n, seed + 1);
    std::vector<float> ref(n);
    ref::add(a.data(), b.data(), ref.data(), n);
    GuardedBuffer da(a), db(b);
    cuda::add(da.get<float>(), db.get<float>(), da.get<float>(), n, gpu.stream);
    gpu.sync();
    expect_close(da.download<float>(n), ref, kFp32Tolerance);
    CHECK(da.guards_intact());
  }
  {  // GELU's negative tail: outputs of -4e-3 down to ~-1e-28 keep their relative precision (no 1 + tanh cancellation),
     // element by element: a normalised error would be dominated by the largest outputs and miss the tail
    const uint64_t seed = seeds.next();
    CAPTURE(seed);
    for (int64_t n : {1, 7, 1000}) {
      CAPTURE(n);
      const std::vector<float> x = test::random_floats(static_cast<size_t>(n), seed, -9.0f, -3.0f);
      std::vector<float> ref(static_cast<size_t>(n));
      ref::gelu_tanh(x.data(), ref.data(), n);
      GuardedBuffer dx(x), dy = nan_output(static_cast<size_t>(n));
      cuda::gelu_tanh(dx.get<float>(), dy.get<float>(), n, gpu.stream);
      gpu.sync();
      expect_gelu_close(x.data(), dy.download<float>(static_cast<size_t>(n)), ref);
      CHECK(dy.guards_intact());
    }
  }
}

TEST_CASE("cuda modulate, add_bias and gated_add match the reference") {
  Seeds seeds(25000);
  Gpu gpu;
  for (int64_t rows : {1, 5, 7, 13}) {
    for (int64_t n : {37, 128, 3073}) {
      for (int64_t offset : {0, 1}) {
        const uint64_t seed = seeds.next();
        CAPTURE(rows);
        CAPTURE(n);
        CAPTURE(offset);
        CAPTURE(seed);
        const size_t count = static_cast<size_t>(rows * n), o = static_cast<size_t>(offset);
        const std::vector<float> x = test::random_floats(count + o, seed, -3.0f, 3.0f);
        const std::vector<float> shift = test::random_floats(n + o, seed + 1, -1.0f, 1.0f);
        const std::vector<float> scale = test::random_floats(n + o, seed + 2, -1.0f, 1.0f);
        const std::vector<float> residual = test::random_floats(count + o, seed + 3, -2.0f, 2.0f);
        GuardedBuffer dx(x), dshift(shift), dscale(scale);

        std::vector<float> ref(count);
        ref::modulate(x.data() + o, shift.data() + o, scale.data() + o, ref.data(), rows, n);
        GuardedBuffer dy = nan_output(count + o);
        cuda::modulate(dx.get<float>() + o, dshift.get<float>() + o, dscale.get<float>() + o, dy.get<float>() + o, rows,
                       n, gpu.stream);
        gpu.sync();
        std::vector<float> got = dy.download<float>(count + o);
        expect_close(std::vector<float>(got.begin() + offset, got.end()), ref, kFp32Tolerance);
        CHECK(dy.guards_intact());

        ref::add_bias(x.data() + o, shift.data() + o, ref.data(), rows, n);
        GuardedBuffer dbias = nan_output(count + o);
        cuda::add_bias(dx.get<float>() + o, dshift.get<float>() + o, dbias.get<float>() + o, rows, n, gpu.stream);
        gpu.sync();
        got = dbias.download<float>(count + o);
        expect_close(std::vector<float>(got.begin() + offset, got.end()), ref, kFp32Tolerance);
        CHECK(dbias.guards_intact());
        GuardedBuffer dinplace(x);  // y = x, as the blocks call it
        cuda::add_bias(dinplace.get<float>() + o, dshift.get<float>() + o, dinplace.get<float>() + o, rows, n,
                       gpu.stream);
        gpu.sync();
        got = dinplace.download<float>(count + o);
        expect_close(std::vector<float>(got.begin() + offset, got.end()), ref, kFp32Tolerance);
        CHECK(dinplace.guards_intact());

        ref.assign(residual.begin() + offset, residual.end());
        ref::gated_add(ref.data(), scale.data() + o, x.data() + o, rows, n);
        GuardedBuffer dres(residual);
        cuda::gated_add(dres.get<float>() + o, dscale.get<float>() + o, dx.get<float>() + o, rows, n, gpu.stream);
        gpu.sync();
        got = dres.download<float>(count + o);
        expect_close(std::vector<float>(got.begin() + offset, got.end()), ref, kFp32Tolerance);
        CHECK(dres.guards_intact());
      }
    }
  }
}

TEST_CASE("cuda embedding_lookup decodes every supported type bit-exactly") {
  Seeds seeds(26000);
  Gpu gpu;
  // Tables of random bytes: every bit pattern of scales and quants occurs, including FP16 scales that are huge,
  // subnormal, infinite or NaN. The GPU decoders repeat the reference's rounding steps, so outputs must be equal bit
  // for bit (NaN counts as equal to NaN: the payload of a converted NaN is not specified).
  const int64_t n_rows = 11;
  for (const TypeTraits& t : all_type_traits()) {
    if (!t.dequantizable) continue;
    const std::string type_label(t.name);
    CAPTURE(type_label);
    REQUIRE(cuda::embedding_supported(t.type));
    const int64_t n_cols = t.block_size == 1 ? 37 : t.block_size * (t.block_size == 32 ? 13 : 3);
    const uint64_t rb = row_bytes(t.type, n_cols);
    for (int64_t n_tokens : {1, 3, 8, 33}) {
      const uint64_t seed = seeds.next();
      CAPTURE(n_tokens);
      CAPTURE(seed);
      std::mt19937_64 rng(seed);
      std::vector<uint8_t> table(static_cast<size_t>(rb * n_rows));
      for (auto& byte : table) byte = static_cast<uint8_t>(rng());
      std::vector<int32_t> ids(static_cast<size_t>(n_tokens));
      for (auto& id : ids) id = static_cast<int32_t>(rng() % n_rows);
      const size_t count = static_cast<size_t>(n_tokens * n_cols);
      std::vector<float> ref(count);
      const QuantMatrixView host_view{t.type, table.data(), n_cols, n_rows};
      ref::embedding_lookup(host_view, ids.data(), n_tokens, ref.data());

      GuardedBuffer dtable(table), dids(ids);
      GuardedBuffer dout = nan_output(count);
      cuda::embedding_lookup({t.type, dtable.get(), n_cols, n_rows}, dids.get<int32_t>(), n_tokens, dout.get<float>(),
                             gpu.stream);
      gpu.sync();
      const std::vector<float> got = dout.download<float>(count);
      size_t mismatches = 0;
      for (size_t i = 0; i < count; ++i) {
        const bool both_nan = std::isnan(got[i]) && std::isnan(ref[i]);
        uint32_t gb, rbits;
        std::memcpy(&gb, &got[i], 4);
        std::memcpy(&rbits, &ref[i], 4);
        if (!both_nan && gb != rbits) ++mismatches;
      }
      CHECK(mismatches == 0);
      CHECK(dout.guards_intact());
    }
  }
  {  // ids outside the table give NaN rows and touch nothing else
    const uint64_t seed = seeds.next();
    CAPTURE(seed);
    const int64_t n_cols = 64;
    const std::vector<float> values = test::random_floats(static_cast<size_t>(n_rows * n_cols), seed);
    const std::vector<int32_t> ids = {3, -1, static_cast<int32_t>(n_rows), 0, std::numeric_limits<int32_t>::max()};
    GuardedBuffer dtable(values), dids(ids);
    GuardedBuffer dout(ids.size() * n_cols * sizeof(float));
    cuda::embedding_lookup({GgmlType::F32, dtable.get(), n_cols, n_rows}, dids.get<int32_t>(),
                           static_cast<int64_t>(ids.size()), dout.get<float>(), gpu.stream);
    gpu.sync();
    const std::vector<float> got = dout.download<float>(ids.size() * n_cols);
    for (size_t t = 0; t < ids.size(); ++t) {
      CAPTURE(t);
      const bool valid = ids[t] >= 0 && ids[t] < n_rows;
      for (int64_t e = 0; e < n_cols; ++e) {
        const float g = got[t * n_cols + e];
        if (valid)
          CHECK(g == values[ids[t] * n_cols + e]);
        else
          CHECK(std::isnan(g));
      }
    }
    CHECK(dout.guards_intact());
  }
  {  // bad arguments are refused
    CHECK_THROWS_AS(cuda::embedding_lookup({GgmlType::Q4_0, nullptr, 33, 4}, nullptr, 1, nullptr, gpu.stream), Error);
    CHECK_THROWS_AS(cuda::embedding_lookup({GgmlType::IQ2_XXS, nullptr, 256, 4}, nullptr, 1, nullptr, gpu.stream),
                    Error);
  }
}

TEST_CASE("cuda store_kv writes FP16 rows at pos0 and nothing else") {
  Seeds seeds(27000);
  Gpu gpu;
  for (int64_t n_tokens : {1, 3, 33}) {
    for (int64_t row_width : {37, 1024}) {
      for (int64_t pos0 : {0, 5}) {
        const uint64_t seed = seeds.next();
        CAPTURE(n_tokens);
        CAPTURE(row_width);
        CAPTURE(pos0);
        CAPTURE(seed);
        const size_t count = static_cast<size_t>(n_tokens * row_width);
        std::vector<float> k = test::random_floats(count, seed, -4.0f, 4.0f);
        std::vector<float> v = test::random_floats(count, seed + 1, -4.0f, 4.0f);
        // Values at the edges of FP16: overflow to infinity, subnormals, exact ties.
        k[0] = 70000.0f;
        v[count - 1] = -1e-6f;
        if (count > 2) k[count / 2] = 1.0f + 1.0f / 2048.0f;
        const int64_t capacity = pos0 + n_tokens + 3;
        GuardedBuffer dk(k), dv(v);
        GuardedBuffer kc(static_cast<size_t>(capacity * row_width) * 2),
            vc(static_cast<size_t>(capacity * row_width) * 2);
        cuda::store_kv(dk.get<float>(), dv.get<float>(), kc.get<__half>(), vc.get<__half>(), n_tokens, pos0, row_width,
                       capacity, gpu.stream);
        CHECK_THROWS_AS(cuda::store_kv(dk.get<float>(), dv.get<float>(), kc.get<__half>(), vc.get<__half>(), n_tokens,
                                       capacity - n_tokens + 1, row_width, capacity, gpu.stream),
                        Error);
        gpu.sync();
        for (auto [src, cache] : {std::pair{&k, &kc}, std::pair{&v, &vc}}) {
          const std::vector<uint16_t> got = cache->download<uint16_t>(static_cast<size_t>(capacity * row_width));
          size_t wrong = 0, touched = 0;
          for (int64_t r = 0; r < capacity; ++r) {
            for (int64_t i = 0; i < row_width; ++i) {
              const uint16_t g = got[r * row_width + i];
              if (r >= pos0 && r < pos0 + n_tokens)
                wrong += g != fp32_to_fp16((*src)[(r - pos0) * row_width + i]);
              else
                touched += g != 0xA5A5;
            }
          }
          CHECK(wrong == 0);
          CHECK(touched == 0);
          CHECK(cache->guards_intact());
        }
      }
    }
  }
}

namespace {

enum class Path { AUTO, CHUNKED, DECODE, FLASH };

struct AttentionData {
  std::vector<float> q;
  std::vector<uint16_t> k, v;
  std::vector<float> ref;
};

AttentionShape make_shape(int64_t n_q, int64_t n_kv, int64_t n_head, int64_t n_kv_head, int64_t head_dim, bool causal) {
  return AttentionShape{n_q,      n_kv,
                        n_head,   n_kv_head,
                        head_dim, causal ? n_kv - n_q : 0,
                        causal,   1.0f / std::sqrt(static_cast<float>(head_dim))};
}

// q in [-6, 6] makes score rows peaky (std ~2 after scaling), so masking, normalisation and max handling matter.
AttentionData attention_data(const AttentionShape& s, uint64_t seed) {
  AttentionData d;
  d.q = test::random_floats(static_cast<size_t>(s.n_q * s.n_head * s.head_dim), seed, -6.0f, 6.0f);
  const auto kv_count = static_cast<size_t>(s.n_kv * s.n_kv_head * s.head_dim);
  d.k = to_fp16(test::random_floats(kv_count, seed + 1));
  d.v = to_fp16(test::random_floats(kv_count, seed + 2));
  d.ref.resize(d.q.size());
  ref::attention(s, d.q.data(), d.k.data(), d.v.data(), d.ref.data());
  return d;
}

// Runs one path with a guarded scratch of scratch_bytes (0: no scratch) and returns the output.
std::vector<float> run_attention(Gpu& gpu, const AttentionShape& s, const AttentionData& d, Path path,
                                 size_t scratch_bytes, int64_t chunk_rows = INT64_MAX) {
  GuardedBuffer dq(d.q), dk(d.k), dv(d.v);
  GuardedBuffer dout = nan_output(d.q.size());
  GuardedBuffer dscratch(std::max<size_t>(scratch_bytes, 1));
  const cuda::AttentionScratch scratch{scratch_bytes ? dscratch.get() : nullptr, scratch_bytes};
  const auto* k = dk.get<__half>();
  const auto* v = dv.get<__half>();
  switch (path) {
    case Path::AUTO:
      cuda::attention(s, dq.get<float>(), k, v, dout.get<float>(), scratch, gpu.cublas, gpu.stream);
      break;
    case Path::CHUNKED:
      cuda::attention_chunked(s, dq.get<float>(), k, v, dout.get<float>(), scratch, chunk_rows, gpu.cublas, gpu.stream);
      break;
    case Path::DECODE:
      cuda::attention_decode(s, dq.get<float>(), k, v, dout.get<float>(), scratch, gpu.stream);
      break;
    case Path::FLASH:
      cuda::attention_flash(s, dq.get<float>(), k, v, dout.get<float>(), gpu.stream);
      break;
  }
  gpu.sync();
  CHECK(dout.guards_intact());
  CHECK(dscratch.guards_intact());
  return dout.download<float>(d.q.size());
}

// Chunked path: q and P are rounded to FP16 (relative 2^-12 each) before the tensor-core GEMMs. A numpy model of
// exactly that rounding on these data (q in [-6, 6], head_dim 64-128) gives normalised errors of 0.6e-7 .. 2.7e-7;
// 2e-6 leaves ~7x margin, while a wrong mask, head mapping or normaliser gives > 1e-3.
constexpr double kChunkedTolerance = 2e-6;
// Decode path: q stays FP32, K and V are read exactly, accumulation is FP32 with exp2f (2 ulp): ~1e-12 expected.
constexpr double kDecodeTolerance = 1e-9;

}  // namespace

TEST_CASE("cuda attention matches the reference: GQA, causal, both paths") {
  Seeds seeds(28000);
  Gpu gpu;
  for (int64_t ratio : {1, 2, 4}) {
    for (bool causal : {false, true}) {
      const uint64_t seed = seeds.next();
      CAPTURE(ratio);
      CAPTURE(causal);
      CAPTURE(seed);
      const AttentionShape s = make_shape(33, 300, 2 * ratio, 2, 64, causal);  // causal: q_pos0 = 267
      const AttentionData d = attention_data(s, seed);
      CHECK_FALSE(cuda::attention_uses_decode(s));
      const size_t bytes = cuda::attention_scratch_bytes(s, s.n_q);
      expect_close(run_attention(gpu, s, d, Path::AUTO, bytes), d.ref, kChunkedTolerance);  // flash where supported
      expect_close(run_attention(gpu, s, d, Path::CHUNKED, bytes), d.ref, kChunkedTolerance);
      expect_close(run_attention(gpu, s, d, Path::DECODE, 0), d.ref, kDecodeTolerance);  // decode kernel forced
    }
  }
}

TEST_CASE("cuda attention decode: q_pos0 > 0, odd groups, head sizes, KV splits") {
  Seeds seeds(29000);
  Gpu gpu;
  struct Case {
    int64_t n_q, n_kv, n_head, n_kv_head, head_dim;
    bool causal;
  };
  const Case cases[] = {
      {1, 300, 4, 4, 64, true},  {3, 300, 8, 4, 64, true},    {8, 300, 16, 4, 64, true},  {1, 300, 6, 2, 80, true},
      {5, 37, 24, 2, 128, true}, {7, 301, 16, 2, 128, false}, {1, 5000, 8, 2, 128, true}, {2, 4099, 32, 8, 128, true},
      {1, 13, 4, 1, 256, true},  {3, 129, 5, 5, 18, true},    {1, 1, 2, 1, 64, true},
  };
  for (const Case& c : cases) {
    const uint64_t seed = seeds.next();
    CAPTURE(c.n_q);
    CAPTURE(c.n_kv);
    CAPTURE(c.n_head);
    CAPTURE(c.n_kv_head);
    CAPTURE(c.head_dim);
    CAPTURE(c.causal);
    CAPTURE(seed);
    const AttentionShape s = make_shape(c.n_q, c.n_kv, c.n_head, c.n_kv_head, c.head_dim, c.causal);
    CHECK(cuda::attention_uses_decode(s));
    const AttentionData d = attention_data(s, seed);
    const size_t full = cuda::attention_scratch_bytes(s, 1);
    // No scratch: one block per (query, head tile) over the whole cache. With scratch: split over the KV length.
    expect_close(run_attention(gpu, s, d, Path::AUTO, 0), d.ref, kDecodeTolerance);
    expect_close(run_attention(gpu, s, d, Path::AUTO, full), d.ref, kDecodeTolerance);
    // A scratch too small for the full split count: fewer splits, same answer.
    expect_close(run_attention(gpu, s, d, Path::DECODE, full / 5), d.ref, kDecodeTolerance);
  }
  {  // an odd head_dim takes the chunked path even for one query
    const AttentionShape s = make_shape(1, 50, 4, 2, 17, true);
    CHECK_FALSE(cuda::attention_uses_decode(s));
    const AttentionData d = attention_data(s, seeds.next());
    expect_close(run_attention(gpu, s, d, Path::AUTO, cuda::attention_scratch_bytes(s, 1)), d.ref, kChunkedTolerance);
    CHECK_THROWS_AS(run_attention(gpu, s, d, Path::DECODE, 0), Error);
  }
}

TEST_CASE("kernels that read the step's position on the device compute what a direct call at that position does") {
  // A replayed decode step (cuda::DevicePosition): the host enqueued the work for position c (captured); the device
  // holds the replay's position p. Token positions, the KV store and decode attention must then give bit for bit
  // what a direct call at p gives, for p below, at and above c within the bucket the work was sized for, and the KV
  // store must write nothing for rows past the cache.
  Seeds seeds(27500);
  Gpu gpu;
  const int64_t captured = 300, max_position = 511;  // one 256-position bucket: 256 .. 511
  for (const int64_t p : {int64_t{260}, captured, int64_t{400}, max_position}) {
    CAPTURE(p);
    const GuardedBuffer dpos(std::vector<int32_t>{static_cast<int32_t>(p)});
    const cuda::DevicePosition position{dpos.get<int32_t>(), captured, max_position};
    {  // token positions: start = captured + 2 becomes p + 2
      GuardedBuffer shifted(3 * sizeof(int32_t));
      cuda::iota_positions(shifted.get<int32_t>(), 3, captured + 2, gpu.stream, position);
      gpu.sync();
      CHECK(shifted.download<int32_t>(3) == std::vector<int32_t>{static_cast<int32_t>(p + 2),
                                                                 static_cast<int32_t>(p + 3),
                                                                 static_cast<int32_t>(p + 4)});
      CHECK(shifted.guards_intact());
    }
    {  // the KV store: rows at p, nothing else
      const int64_t row_width = 37, capacity = max_position + 1;
      const uint64_t seed = seeds.next();
      const std::vector<float> k = test::random_floats(row_width, seed), v = test::random_floats(row_width, seed + 1);
      const GuardedBuffer dk(k), dv(v);
      const size_t cache_bytes = static_cast<size_t>(capacity * row_width) * 2;
      GuardedBuffer kc(cache_bytes), vc(cache_bytes), kd(cache_bytes), vd(cache_bytes);
      cuda::store_kv(dk.get<float>(), dv.get<float>(), kc.get<__half>(), vc.get<__half>(), 1, captured, row_width,
                     capacity, gpu.stream, position);
      cuda::store_kv(dk.get<float>(), dv.get<float>(), kd.get<__half>(), vd.get<__half>(), 1, p, row_width, capacity,
                     gpu.stream);
      gpu.sync();
      CHECK(kc.download<uint16_t>(cache_bytes / 2) == kd.download<uint16_t>(cache_bytes / 2));
      CHECK(vc.download<uint16_t>(cache_bytes / 2) == vd.download<uint16_t>(cache_bytes / 2));
      CHECK(kc.guards_intact());
      CHECK(vc.guards_intact());
      // A replay whose rows would pass the end of a smaller cache writes nothing (0xA5 is GuardedBuffer's fill).
      const int64_t small = captured + 1;
      GuardedBuffer ks(static_cast<size_t>(small * row_width) * 2), vs(static_cast<size_t>(small * row_width) * 2);
      cuda::store_kv(dk.get<float>(), dv.get<float>(), ks.get<__half>(), vs.get<__half>(), 1, captured, row_width,
                     small, gpu.stream, position);
      gpu.sync();
      const std::vector<uint16_t> untouched(static_cast<size_t>(small * row_width), 0xA5A5);
      if (p >= small) {
        CHECK(ks.download<uint16_t>(untouched.size()) == untouched);
        CHECK(vs.download<uint16_t>(untouched.size()) == untouched);
      }
      CHECK(ks.guards_intact());
    }
    {  // decode attention over the first p + 1 keys of a cache of max_position + 1
      const AttentionShape full = make_shape(1, max_position + 1, 8, 2, 64, true);
      const AttentionData d = attention_data(full, seeds.next());
      const size_t scratch_bytes = cuda::attention_scratch_bytes(full, 1);
      const GuardedBuffer dq(d.q), dk(d.k), dv(d.v);
      GuardedBuffer replay = nan_output(d.q.size()), direct = nan_output(d.q.size());
      GuardedBuffer scratch_a(scratch_bytes), scratch_b(scratch_bytes);
      const AttentionShape at_capture = make_shape(1, captured + 1, 8, 2, 64, true);
      const AttentionShape at_p = make_shape(1, p + 1, 8, 2, 64, true);
      cuda::attention_decode(at_capture, dq.get<float>(), dk.get<__half>(), dv.get<__half>(), replay.get<float>(),
                             cuda::AttentionScratch{scratch_a.get(), scratch_bytes}, gpu.stream, position);
      cuda::attention_decode(at_p, dq.get<float>(), dk.get<__half>(), dv.get<__half>(), direct.get<float>(),
                             cuda::AttentionScratch{scratch_b.get(), scratch_bytes}, gpu.stream);
      gpu.sync();
      const std::vector<float> a = replay.download<float>(d.q.size()), b = direct.download<float>(d.q.size());
      REQUIRE(std::all_of(a.begin(), a.end(), [](float x) { return std::isfinite(x); }));
      CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      CHECK(replay.guards_intact());
      CHECK(scratch_a.guards_intact());
    }
  }
}

TEST_CASE("cuda rope_store_kv gives what positions, RoPE of q and k and store_kv give, also in a replayed step") {
  // The fused op against the four kernels it replaces (CudaOps without fused ops) and against the reference. The
  // rotation is the same expression in both kernels, so q is held to the float kernels' tolerance and the caches to a
  // few FP16 values one ulp apart (where the compiler contracts the rotation into a fused multiply-add differently,
  // the float may land on the other side of a half's rounding: one such value among the 128 of the smallest case is
  // ~2e-8 normalised; 1e-7 allows a few, an indexing or position error gives 1e-1 or more); cache rows outside the
  // step's must keep their fill.
  Seeds seeds(27800);
  Gpu gpu;
  struct Heads {
    int64_t q, kv;
  };
  for (int64_t n_tokens : {1, 3, 8}) {
    for (const Heads heads : {Heads{8, 2}, Heads{5, 5}, Heads{9, 3}}) {
      for (int64_t head_dim : {64, 80, 128}) {
        for (RopeMode mode : {RopeMode::ADJACENT, RopeMode::HALF_SPLIT}) {
          const uint64_t seed = seeds.next();
          CAPTURE(n_tokens);
          CAPTURE(heads.q);
          CAPTURE(heads.kv);
          CAPTURE(head_dim);
          CAPTURE(static_cast<int>(mode));
          CAPTURE(seed);
          const int64_t row = heads.kv * head_dim, pos0 = static_cast<int64_t>(seed % 3000);
          const int64_t capacity = pos0 + n_tokens + 5;
          const auto q = test::random_floats(static_cast<size_t>(n_tokens * heads.q * head_dim), seed);
          const auto k = test::random_floats(static_cast<size_t>(n_tokens * row), seed + 1);
          const auto v = test::random_floats(static_cast<size_t>(n_tokens * row), seed + 2, -4.0f, 4.0f);
          const size_t cache_halves = static_cast<size_t>(capacity * row);
          // The sequence of four kernels.
          GuardedBuffer q_seq(q), k_seq(k), v_in(v), positions(static_cast<size_t>(n_tokens) * sizeof(int32_t));
          GuardedBuffer kc_seq(cache_halves * 2), vc_seq(cache_halves * 2);
          cuda::iota_positions(positions.get<int32_t>(), n_tokens, pos0, gpu.stream);
          cuda::rope(q_seq.get<float>(), n_tokens, heads.q, head_dim, positions.get<int32_t>(), 10000.0f, mode,
                     gpu.stream);
          cuda::rope(k_seq.get<float>(), n_tokens, heads.kv, head_dim, positions.get<int32_t>(), 10000.0f, mode,
                     gpu.stream);
          cuda::store_kv(k_seq.get<float>(), v_in.get<float>(), kc_seq.get<__half>(), vc_seq.get<__half>(), n_tokens,
                         pos0, row, capacity, gpu.stream);
          // The fused op.
          GuardedBuffer q_fused(q), k_fused(k), kc(cache_halves * 2), vc(cache_halves * 2);
          cuda::rope_store_kv(q_fused.get<float>(), k_fused.get<float>(), v_in.get<float>(), n_tokens, heads.q,
                              heads.kv, head_dim, pos0, 10000.0f, mode, kc.get<__half>(), vc.get<__half>(), capacity,
                              gpu.stream);
          gpu.sync();
          // q against the sequence and the reference.
          std::vector<int32_t> pos(static_cast<size_t>(n_tokens));
          for (int64_t t = 0; t < n_tokens; ++t) pos[static_cast<size_t>(t)] = static_cast<int32_t>(pos0 + t);
          std::vector<float> q_ref = q, k_ref = k;
          ref::rope(q_ref.data(), n_tokens, heads.q, head_dim, pos.data(), 10000.0f, mode);
          ref::rope(k_ref.data(), n_tokens, heads.kv, head_dim, pos.data(), 10000.0f, mode);
          const auto q_got = q_fused.download<float>(q.size());
          expect_close(q_got, q_seq.download<float>(q.size()), kFp32Tolerance);
          expect_close(q_got, q_ref, kFp32Tolerance);
          CHECK(k_fused.download<float>(k.size()) == k);  // k's buffer is left as it was
          // The caches: the step's rows against the sequence's and the reference's, every other row its fill.
          const auto kh = kc.download<uint16_t>(cache_halves), vh = vc.download<uint16_t>(cache_halves);
          const auto kh_seq = kc_seq.download<uint16_t>(cache_halves), vh_seq = vc_seq.download<uint16_t>(cache_halves);
          const auto first = static_cast<size_t>(pos0 * row), last = first + k.size();
          std::vector<float> k_rows, v_rows, k_rows_seq;
          for (size_t i = 0; i < cache_halves; ++i) {
            if (i < first || i >= last) {
              CHECK(kh[i] == 0xA5A5);
              CHECK(vh[i] == 0xA5A5);
              continue;
            }
            k_rows.push_back(fp16_to_fp32(kh[i]));
            k_rows_seq.push_back(fp16_to_fp32(kh_seq[i]));
            v_rows.push_back(fp16_to_fp32(vh[i]));
            CHECK(vh[i] == vh_seq[i]);  // v is only converted: the same bits
          }
          expect_close(k_rows, k_rows_seq, 1e-7);
          expect_close(k_rows, k_ref, 1e-6);  // FP16 rounding: at most 2^-11 relative per value
          expect_close(v_rows, v, 1e-6);
          CHECK(q_fused.guards_intact());
          CHECK(kc.guards_intact());
          CHECK(vc.guards_intact());
        }
      }
    }
  }
  {  // A replayed step (cuda::DevicePosition): what a direct call at the replay's position gives, bit for bit; rows
     // that would pass the cache are not written, q is still rotated.
    const int64_t n_head = 4, n_kv = 2, head_dim = 64, row = n_kv * head_dim, captured = 300, capacity = 512;
    const uint64_t seed = seeds.next();
    const auto q = test::random_floats(static_cast<size_t>(n_head * head_dim), seed);
    const auto k = test::random_floats(static_cast<size_t>(row), seed + 1);
    const auto v = test::random_floats(static_cast<size_t>(row), seed + 2);
    const GuardedBuffer dk(k), dv(v);
    for (const int64_t p : {int64_t{260}, captured, int64_t{511}, int64_t{600}}) {
      CAPTURE(p);
      const GuardedBuffer dpos(std::vector<int32_t>{static_cast<int32_t>(p)});
      const cuda::DevicePosition position{dpos.get<int32_t>(), captured, 1023};
      GuardedBuffer q_replay(q), q_direct(q);
      GuardedBuffer kc(static_cast<size_t>(capacity * row) * 2), vc(static_cast<size_t>(capacity * row) * 2);
      GuardedBuffer kd(static_cast<size_t>(capacity * row) * 2), vd(static_cast<size_t>(capacity * row) * 2);
      cuda::rope_store_kv(q_replay.get<float>(), dk.get<float>(), dv.get<float>(), 1, n_head, n_kv, head_dim, captured,
                          10000.0f, RopeMode::HALF_SPLIT, kc.get<__half>(), vc.get<__half>(), capacity, gpu.stream,
                          position);
      if (p < capacity) {
        cuda::rope_store_kv(q_direct.get<float>(), dk.get<float>(), dv.get<float>(), 1, n_head, n_kv, head_dim, p,
                            10000.0f, RopeMode::HALF_SPLIT, kd.get<__half>(), vd.get<__half>(), capacity, gpu.stream);
      } else {  // past the cache: the direct q is RoPE's alone at p
        const GuardedBuffer one_pos(std::vector<int32_t>{static_cast<int32_t>(p)});
        cuda::rope(q_direct.get<float>(), 1, n_head, head_dim, one_pos.get<int32_t>(), 10000.0f, RopeMode::HALF_SPLIT,
                   gpu.stream);
      }
      gpu.sync();
      const auto a = q_replay.download<float>(q.size()), b = q_direct.download<float>(q.size());
      if (p < capacity)
        CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      else
        expect_close(a, b, kFp32Tolerance);
      const size_t halves = static_cast<size_t>(capacity * row);
      CHECK(kc.download<uint16_t>(halves) == kd.download<uint16_t>(halves));  // p >= capacity: both untouched
      CHECK(vc.download<uint16_t>(halves) == vd.download<uint16_t>(halves));
      CHECK(kc.guards_intact());
      CHECK(vc.guards_intact());
    }
  }
  {  // refused: an odd head_dim, rows past the cache, a null pointer
    GuardedBuffer buf(4096);
    float* f = buf.get<float>();
    __half* h = buf.get<__half>();
    CHECK_THROWS_AS(cuda::rope_store_kv(f, f, f, 1, 1, 1, 7, 0, 1e4f, RopeMode::ADJACENT, h, h, 4, gpu.stream), Error);
    CHECK_THROWS_AS(cuda::rope_store_kv(f, f, f, 2, 1, 1, 8, 3, 1e4f, RopeMode::ADJACENT, h, h, 4, gpu.stream), Error);
    CHECK_THROWS_AS(cuda::rope_store_kv(f, f, f, 1, 1, 1, 8, 0, 1e4f, RopeMode::ADJACENT, nullptr, h, 4, gpu.stream),
                    Error);
  }
}

TEST_CASE("cuda attention chunked path: odd shapes") {
  Seeds seeds(30000);
  Gpu gpu;
  struct Case {
    int64_t n_q, n_kv, n_head, n_kv_head, head_dim;
    bool causal;
    int64_t chunk;
  };
  const Case cases[] = {
      {13, 37, 4, 2, 80, false, 5},
      {13, 37, 4, 4, 18, true, 4},
      {9, 9, 3, 1, 64, true, 2},
      {33, 300, 8, 2, 128, true, 7},
      {40, 40, 2, 2, 96, true, 40},
      {33, 1000, 4, 1, 64, false, 16},
      // Rows longer than 8192 keys leave the register softmax for the two-pass in-place one.
      {9, 9000, 2, 1, 64, true, 4},
      {12, 8500, 2, 2, 32, false, 12},
  };
  for (const Case& c : cases) {
    const uint64_t seed = seeds.next();
    CAPTURE(c.n_q);
    CAPTURE(c.n_kv);
    CAPTURE(c.n_head);
    CAPTURE(c.n_kv_head);
    CAPTURE(c.head_dim);
    CAPTURE(c.causal);
    CAPTURE(c.chunk);
    CAPTURE(seed);
    const AttentionShape s = make_shape(c.n_q, c.n_kv, c.n_head, c.n_kv_head, c.head_dim, c.causal);
    const AttentionData d = attention_data(s, seed);
    // Scratch sized for exactly c.chunk rows: several chunks, each with its own causal key range.
    const size_t bytes = cuda::attention_scratch_bytes(s, c.chunk);
    CHECK(cuda::attention_max_chunk(s, bytes) == std::min(c.chunk, c.n_q));
    expect_close(run_attention(gpu, s, d, Path::CHUNKED, bytes), d.ref, kChunkedTolerance);
  }
}

TEST_CASE("cuda attention long chunked case: >= 4 chunks equal one chunk and the reference") {
  Seeds seeds(31000);
  Gpu gpu;
  for (bool causal : {true, false}) {
    const uint64_t seed = seeds.next();
    CAPTURE(causal);
    CAPTURE(seed);
    // n_q = n_kv = 1100 in chunks of 250 (FERRY_TEST_QUICK, for sanitizer runs: 460 in chunks of 100); causal with
    // GQA 2, non-causal without.
    const int64_t n = test::quick_mode() ? 460 : 1100, chunk = test::quick_mode() ? 100 : 250;
    const AttentionShape s = causal ? make_shape(n, n, 4, 2, 64, true) : make_shape(n, n, 2, 2, 64, false);
    const AttentionData d = attention_data(s, seed);
    const size_t small = cuda::attention_scratch_bytes(s, chunk);
    const int64_t max_chunk = cuda::attention_max_chunk(s, small);
    CHECK(max_chunk == chunk);
    CHECK((s.n_q + max_chunk - 1) / max_chunk >= 4);
    // The whole score matrix is never allocated: the chunked scratch is well under n_q x n_kv floats per head.
    CHECK(small < static_cast<size_t>(s.n_q * s.n_kv * s.n_head * 4) / 3);
    const std::vector<float> chunked = run_attention(gpu, s, d, Path::CHUNKED, small);
    const std::vector<float> single = run_attention(gpu, s, d, Path::CHUNKED, cuda::attention_scratch_bytes(s, s.n_q));
    expect_close(chunked, d.ref, kChunkedTolerance);
    expect_close(single, d.ref, kChunkedTolerance);
    // Both round the same q and P; only the GEMMs' summation order can differ (a flipped FP16 rounding of one P moves
    // it by 2^-11), so chunked and single-chunk agree far more closely than either agrees with the reference.
    expect_close(chunked, single, 1e-8);
  }
}

namespace {

struct FlashCase {
  int64_t n_q, n_kv, n_head, n_kv_head, head_dim;
  bool causal;
};

// Query counts around the 64-row tile (9, 64, 65, 130), key counts off the 64-key tile, a causal run with a long
// cached past (q_pos0 = 600), Flux's joint non-causal form with n_kv != n_q, and long runs of many tiles.
std::vector<FlashCase> flash_cases() {
  const int64_t long_n = test::quick_mode() ? 300 : 1100;
  return {
      {9, 9, 1, 1, 64, true},           {13, 37, 4, 2, 64, false},
      {64, 64, 2, 2, 128, true},        {65, 65, 2, 1, 128, true},
      {100, 700, 8, 2, 128, true},      {130, 130, 3, 3, 64, false},
      {200, 333, 6, 2, 128, false},     {33, 1000, 4, 1, 64, false},
      {long_n, long_n, 4, 2, 64, true}, {long_n, long_n, 2, 2, 128, false},
  };
}

bool flash_runs_here() {
  if (compute_capability_major() >= 8) return true;
  MESSAGE("flash attention needs compute capability 8.0; this device takes the chunked path");
  return false;
}

}  // namespace

// No cuBLAS call in this case: the sanitizer's racecheck runs it (device-run.sh leaves out the chunked cases).
TEST_CASE("cuda flash attention: odd shapes, GQA, causal with a cached past, both head sizes") {
  Seeds seeds(33000);
  Gpu gpu;
  if (!flash_runs_here()) return;
  for (const FlashCase& c : flash_cases()) {
    const uint64_t seed = seeds.next();
    CAPTURE(c.n_q);
    CAPTURE(c.n_kv);
    CAPTURE(c.n_head);
    CAPTURE(c.n_kv_head);
    CAPTURE(c.head_dim);
    CAPTURE(c.causal);
    CAPTURE(seed);
    const AttentionShape s = make_shape(c.n_q, c.n_kv, c.n_head, c.n_kv_head, c.head_dim, c.causal);
    const AttentionData d = attention_data(s, seed);
    const std::vector<float> flash = run_attention(gpu, s, d, Path::FLASH, 0);
    expect_close(flash, d.ref, kChunkedTolerance);
    // attention() takes it with no scratch at all (the chunked path would refuse: BUDGET), bit for bit.
    const std::vector<float> auto_path = run_attention(gpu, s, d, Path::AUTO, 0);
    CHECK(std::memcmp(flash.data(), auto_path.data(), flash.size() * sizeof(float)) == 0);
  }
  {  // a NaN in one query row reaches that row's outputs only
    const AttentionShape s = make_shape(70, 200, 4, 2, 128, true);
    AttentionData d = attention_data(s, seeds.next());
    const int64_t bad_row = 37, row_width = s.n_head * s.head_dim;
    d.q[static_cast<size_t>(bad_row * row_width + 5)] = std::nanf("");  // head 0, element 5
    const std::vector<float> got = run_attention(gpu, s, d, Path::FLASH, 0);
    int64_t nan_in_row = 0, nan_elsewhere = 0;
    for (int64_t i = 0; i < static_cast<int64_t>(got.size()); ++i) {
      const bool in_bad = i / row_width == bad_row && i % row_width < s.head_dim;
      if (std::isnan(got[static_cast<size_t>(i)])) ++(in_bad ? nan_in_row : nan_elsewhere);
    }
    CHECK(nan_in_row == s.head_dim);
    CHECK(nan_elsewhere == 0);
  }
  {  // what the kernel does not take
    const AttentionShape s = make_shape(70, 70, 4, 2, 80, true);
    const AttentionData d = attention_data(s, seeds.next());
    CHECK_THROWS_AS(run_attention(gpu, s, d, Path::FLASH, 0), Error);
    GuardedBuffer buf(size_t{4096});
    const auto* base = buf.get<unsigned char>();
    const auto* f = reinterpret_cast<const float*>(base);
    const auto* h = reinterpret_cast<const __half*>(base);
    const AttentionShape ok = make_shape(70, 70, 4, 2, 128, true);
    CHECK(cuda::attention_flash_supported(ok, f, h, h, f));
    CHECK_FALSE(cuda::attention_flash_supported(ok, f, h + 1, h, f));     // k 2 bytes off 16
    CHECK_FALSE(cuda::attention_flash_supported(ok, base + 4, h, h, f));  // q 4 bytes off 8
  }
}

TEST_CASE("cuda flash attention against the chunked path, which serves the shapes flash does not take") {
  Seeds seeds(34000);
  Gpu gpu;
  if (!flash_runs_here()) return;
  for (const FlashCase& c : flash_cases()) {
    const uint64_t seed = seeds.next();
    CAPTURE(c.n_q);
    CAPTURE(c.n_kv);
    CAPTURE(c.head_dim);
    CAPTURE(c.causal);
    CAPTURE(seed);
    const AttentionShape s = make_shape(c.n_q, c.n_kv, c.n_head, c.n_kv_head, c.head_dim, c.causal);
    const AttentionData d = attention_data(s, seed);
    // The chunked path rounds P relative to the row's final max, flash relative to the running one: the FP16
    // roundings differ element by element, so the two agree only as closely as each agrees with the reference.
    expect_close(run_attention(gpu, s, d, Path::FLASH, 0),
                 run_attention(gpu, s, d, Path::CHUNKED, cuda::attention_scratch_bytes(s, s.n_q)), kChunkedTolerance);
  }
  // head_dim 80: attention() takes the chunked path, and without scratch refuses with BUDGET.
  const AttentionShape s = make_shape(70, 70, 4, 2, 80, true);
  const AttentionData d = attention_data(s, seeds.next());
  expect_close(run_attention(gpu, s, d, Path::AUTO, cuda::attention_scratch_bytes(s, s.n_q)), d.ref, kChunkedTolerance);
  try {
    run_attention(gpu, s, d, Path::AUTO, 0);
    FAIL("no BUDGET error without scratch on the chunked path");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::BUDGET);
  }
}

TEST_CASE("cuda attention scratch sizing and budget errors") {
  Seeds seeds(32000);
  const AttentionShape s = make_shape(100, 700, 8, 2, 128, true);
  for (int64_t c : {1, 7, 64, 100}) {
    CAPTURE(c);
    const size_t bytes = cuda::attention_scratch_bytes(s, c);
    CHECK(cuda::attention_max_chunk(s, bytes) == c);
    CHECK(cuda::attention_max_chunk(s, bytes - 1) == c - 1);
  }
  CHECK(cuda::attention_scratch_bytes(s, 1000) == cuda::attention_scratch_bytes(s, 100));  // clamped to n_q
  CHECK(cuda::attention_max_chunk(s, size_t{1} << 40) == s.n_q);

  Gpu gpu;
  const AttentionData d = attention_data(s, seeds.next());
  const size_t one_row = cuda::attention_scratch_bytes(s, 1);
  for (size_t bytes : {size_t{0}, one_row - 1}) {
    CAPTURE(bytes);
    try {
      run_attention(gpu, s, d, Path::CHUNKED, bytes);  // attention() would take the flash path: no scratch
      FAIL("no BUDGET error for a scratch below one query row");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::BUDGET);
    }
  }
  const AttentionShape bad{4, 10, 6, 4, 64, 0, false, 0.125f};  // 6 heads over 4 KV heads
  CHECK_THROWS_AS(cuda::attention_scratch_bytes(bad, 1), Error);
}

TEST_CASE("read_host_to_device: a kernel's reads of pinned host memory equal a copy, any size and alignment") {
  // The scalar reference is the host buffer itself: every byte must arrive, none may be written outside the target.
  constexpr size_t kMax = 3 * 4096 + 37;
  struct PinnedBytes {  // freed however the case ends
    uint8_t* data = nullptr;
    PinnedBytes() { FERRY_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&data), kMax + 64, cudaHostAllocDefault)); }
    ~PinnedBytes() { cudaFreeHost(data); }
    PinnedBytes(const PinnedBytes&) = delete;
    PinnedBytes& operator=(const PinnedBytes&) = delete;
  } pinned;
  uint8_t* host = pinned.data;
  const uint64_t seed = test::test_seed(4401);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < kMax + 64; ++i) host[i] = static_cast<uint8_t>(rng());
  const void* view = cuda::device_view_of_host(host);
  REQUIRE(view != nullptr);  // cudaHostAlloc'd memory on a 64-bit system with unified addressing
  CHECK(cuda::device_view_of_host(nullptr) == nullptr);
  std::vector<uint8_t> pageable(64);
  CHECK(cuda::device_view_of_host(pageable.data()) == nullptr);  // pageable: the caller must use a copy
  test::Stream stream;
  // Sizes below, at and above one 16-byte word and one block of threads; source and target offsets that agree
  // modulo 16 (the vector path with a head and a tail) and that do not (the byte path).
  for (size_t bytes : {size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{255}, size_t{4096}, size_t{4099}, kMax})
    for (size_t src_offset : {size_t{0}, size_t{3}, size_t{16}})
      for (size_t dst_offset : {size_t{0}, size_t{3}, size_t{8}}) {
        CAPTURE(bytes);
        CAPTURE(src_offset);
        CAPTURE(dst_offset);
        GuardedBuffer dst(bytes, dst_offset);
        cuda::read_host_to_device(dst.get(), static_cast<const uint8_t*>(view) + src_offset, bytes, stream);
        stream.sync();
        CHECK(dst.guards_intact());
        const auto got = dst.download<uint8_t>();
        CHECK(std::memcmp(got.data(), host + src_offset, bytes) == 0);
      }
}
