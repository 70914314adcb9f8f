// GPU matrix products (kernels/cuda/gemv.cu, gemm.cu) against the scalar reference ferry::ref::matmul, which
// dequantizes with ref::dequantize and accumulates in double.
//
// Tolerances (normalised error, mse(gpu, ref) / mse(ref, 0), as ggml's op tests use it):
// - quant_gemv: 1e-8. It decodes the weights in FP32 (fused multiply-adds: within an ulp of the reference values)
//   and accumulates in FP32 in its own order; for K <= 8192 that is ~K·2^-48 ≈ 1e-11 relative. Any indexing or
//   decoding mistake gives O(1e-2) or more.
//   Q4_0, Q8_0, Q4_K and Q6_K take the int8-activation kernel (gemv_i8_kernel.cuh; Q4_1 and Q5_K too, through
//   quant_gemv_fused only): x is rounded per 32 elements to
//   d·q, d = max|x| / 127, q = rint(x / d) (half to even), as the CPU GEMV does. Their 1e-8 is checked against the
//   reference on that rounded x (reference_gemv(), the same rounding on the host), which pins the codes, scales and
//   indexing exactly; against the exact x they are checked at 2e-4 on the large shapes: the rounding's expected
//   normalised error is E[d²] / (12 E[x²]) ≈ 1.5e-5 for uniform x (see kernels/cpu/gemv.hpp). Small shapes are
//   left out of that check because a handful of outputs can sit near zero by chance.
// - dequant_gemm, against the reference on the exact operands: 1e-6. W and x are rounded to FP16 (relative error up
//   to 2^-11, mean square ~4e-8 each), so ~8e-8 is expected; 1e-6 leaves a 12x margin.
// - dequant_gemm, against the reference on FP16-rounded W and x: 1e-8. Only the tensor cores' FP32 accumulation
//   remains (as for the GEMV); this isolates the kernel's own error from the FP16 format's.
// Weights: random blocks (every quant bit random, scales 2^-20 .. 2^-1 of 0.05) for the quantized types, Gaussian
// weights for F32/F16/BF16; x uniform in [-1, 1]. Outputs sit between guard bytes and are checked for NaN.
#include <doctest/doctest.h>

#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <vector>

#include "cuda_test_helpers.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/ref/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "support/errors.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

namespace ferry::test {
namespace {

constexpr double kGemvTolerance = 1e-8;
constexpr double kGemvInt8ExactTolerance = 2e-4;  // int8 activations against the exact x (reason at the top)
constexpr double kGemmTolerance = 1e-6;
constexpr double kGemmRoundedTolerance = 1e-8;

const GgmlType kGemvTypes[] = {GgmlType::Q4_0,   GgmlType::Q4_1,   GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                               GgmlType::Q2_K,   GgmlType::Q3_K,   GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                               GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::F16,  GgmlType::BF16, GgmlType::F32};

bool is_float_type(GgmlType type) { return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16; }
// The types quant_gemv sends to the int8-activation kernel, and those quant_gemv_fused takes.
const GgmlType kInt8GemvTypes[] = {GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K};
const GgmlType kFusedGemvTypes[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0,
                                    GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
bool gemv_uses_int8_x(GgmlType type) {
  return std::find(std::begin(kInt8GemvTypes), std::end(kInt8GemvTypes), type) != std::end(kInt8GemvTypes);
}

// x as the int8-activation GEMV sees it: per 32 elements d·q, d = max|x| / 127, q = nearbyint(x · (127 / max|x|)).
std::vector<float> round_x_to_int8_blocks(std::vector<float> x) {
  for (size_t b = 0; b + 32 <= x.size(); b += 32) {
    float amax = 0.0f;
    for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f, inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (size_t i = b; i < b + 32; ++i) x[i] = d * std::nearbyint(x[i] * inv);
  }
  return x;
}

// Weights for a product test: random blocks for quantized types, Gaussian values for float types (random bit
// patterns would overflow FP16 on the GEMM path).
std::vector<uint8_t> make_weights(GgmlType type, int64_t n, int64_t k, uint64_t seed) {
  if (!is_float_type(type)) return random_blocks(type, n * k, seed, 0.05f);
  const auto w = random_weights(static_cast<size_t>(n * k), seed, 0.05f);
  std::vector<uint8_t> bytes(row_bytes(type, n * k));
  for (size_t i = 0; i < w.size(); ++i) {
    if (type == GgmlType::F32) {
      std::memcpy(bytes.data() + 4 * i, &w[i], 4);
    } else {
      const uint16_t h = type == GgmlType::F16 ? fp32_to_fp16(w[i]) : fp32_to_bf16(w[i]);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

struct Operands {
  GgmlType type;
  int64_t n, k, t;
  std::vector<uint8_t> w;
  std::vector<float> x;
  GuardedBuffer d_w, d_x;
  Operands(GgmlType type_, int64_t n_, int64_t k_, int64_t t_, uint64_t seed)
      : type(type_),
        n(n_),
        k(k_),
        t(t_),
        w(make_weights(type_, n_, k_, seed)),
        x(random_floats(static_cast<size_t>(t_ * k_), seed + 7)),
        d_w(w.size()),
        d_x(x.size() * 4) {
    d_w.upload(w.data(), w.size());
    d_x.upload(x.data(), x.size() * 4);
  }
  QuantMatrixView host_view() const { return {type, w.data(), k, n}; }
  QuantMatrixView device_view() const { return {type, d_w.get(), k, n}; }
  std::vector<float> reference() const {
    std::vector<float> y(static_cast<size_t>(t * n));
    ref::matmul(host_view(), x.data(), t, y.data());
    return y;
  }
  // The reference on the operands as the GEMV sees them: x rounded to int8 blocks for the int8-activation types.
  std::vector<float> reference_gemv() const {
    if (!gemv_uses_int8_x(type)) return reference();
    const auto xr = round_x_to_int8_blocks(x);
    std::vector<float> y(static_cast<size_t>(t * n));
    ref::matmul(host_view(), xr.data(), t, y.data());
    return y;
  }
  // The reference on the operands as the GEMM sees them: W and x rounded to FP16.
  std::vector<float> reference_fp16_operands() const {
    std::vector<float> wf(static_cast<size_t>(n * k));
    ref::dequantize(type, w.data(), wf.data(), n * k);
    for (auto& v : wf) v = fp16_to_fp32(fp32_to_fp16(v));
    std::vector<float> xr = x;
    for (auto& v : xr) v = fp16_to_fp32(fp32_to_fp16(v));
    std::vector<float> y(static_cast<size_t>(t * n));
    ref::matmul(QuantMatrixView{GgmlType::F32, wf.data(), k, n}, xr.data(), t, y.data());
    return y;
  }
};

int64_t count_nans(const std::vector<float>& v) {
  int64_t c = 0;
  for (float f : v) c += f != f;
  return c;
}

// Scratch for dequant_gemm: `weight_rows` rows of dequantized weights, `t` tokens of x in FP16, and a cuBLASLt
// workspace.
struct Scratch {
  GuardedBuffer weight, act, workspace;
  cuda::GemmScratch view;
  Scratch(int64_t weight_rows, int64_t k, int64_t t)
      : weight(static_cast<size_t>(weight_rows * k) * 2),
        act(static_cast<size_t>(t * k) * 2),
        workspace(cuda::kGemmWorkspaceBytes) {
    view.weight = weight.get<__half>();
    view.weight_elems = static_cast<size_t>(weight_rows * k);
    view.activations = act.get<__half>();
    view.activation_elems = static_cast<size_t>(t * k);
    view.workspace = workspace.get();
    view.workspace_bytes = cuda::kGemmWorkspaceBytes;
  }
  bool guards_intact() const { return weight.guards_intact() && act.guards_intact(); }
};

std::vector<float> run_gemv(const Operands& op, Stream& stream) {
  GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
  cuda::quant_gemv(op.device_view(), op.d_x.get<float>(), op.t, d_y.get<float>(), stream);
  stream.sync();
  CHECK(d_y.guards_intact());
  return d_y.download<float>();
}

// dequant_gemm with `scratch_rows` rows of weight scratch and `scratch_tokens` tokens of activation scratch (all of
// T when 0).
std::vector<float> run_gemm(const Operands& op, int64_t scratch_rows, Stream& stream, const Cublas& cublas,
                            int64_t scratch_tokens = 0) {
  Scratch scratch(scratch_rows, op.k, scratch_tokens > 0 ? scratch_tokens : op.t);
  GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
  cuda::dequant_gemm(op.device_view(), op.d_x.get<float>(), op.t, d_y.get<float>(), scratch.view, cublas, stream);
  stream.sync();
  CHECK(d_y.guards_intact());
  CHECK(scratch.guards_intact());
  return d_y.download<float>();
}

TEST_CASE("quant_gemv matches ref::matmul for every type, T = 1, 3, 8 and odd shapes") {
  Stream stream;
  uint64_t seed = test_seed(5000);
  const int64_t big_rows = quick_mode() ? 37 : 301;  // FERRY_TEST_QUICK: sanitizer runs
  for (GgmlType type : kGemvTypes) {
    const int64_t qk = is_float_type(type) ? 8 : type_traits(type).block_size;
    // (rows, K): one block, three blocks (an odd count), and 4096 (two K segments at T = 8).
    const int64_t shapes[][2] = {{1, qk}, {5, 3 * qk}, {7, 4096}, {13, qk}, {big_rows, 4096}};
    for (int64_t t : {1, 3, 8}) {
      for (const auto& s : shapes) {
        const Operands op(type, s[0], s[1], t, ++seed);
        INFO("type ", type_label(type), ", N = ", op.n, ", K = ", op.k, ", T = ", t, ", seed ", seed);
        const auto y = run_gemv(op, stream);
        const auto ref = op.reference_gemv();
        const double err = normalized_error(y, ref, ref.size());
        INFO("normalised error ", err);
        CHECK(err <= kGemvTolerance);
        CHECK(count_nans(y) == 0);
        if (gemv_uses_int8_x(type) && op.n == big_rows && op.k == 4096) {
          const auto exact = op.reference();
          const double err_exact = normalized_error(y, exact, exact.size());
          INFO("normalised error against the exact x ", err_exact);
          CHECK(err_exact <= kGemvInt8ExactTolerance);
        }
      }
    }
  }
}

TEST_CASE("quant_gemv with several K segments (T = 3, K = 8192) and unaligned rows (Q4_1, K = 96)") {
  Stream stream;
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}) {
    const Operands op(type, 37, 8192, 3, test_seed(777 + static_cast<uint64_t>(type)));
    INFO("type ", type_label(type));
    const auto y = run_gemv(op, stream);
    const auto ref = op.reference_gemv();
    CHECK(normalized_error(y, ref, ref.size()) <= kGemvTolerance);
  }
  // The types with 4-, 8- or 16-byte loads take them only when the data and the row size allow; a copy of the
  // weights shifted by 2 bytes sends them down the 2-byte-load path.
  for (GgmlType type : {GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::IQ4_XS, GgmlType::F16}) {
    const int64_t qk = is_float_type(type) ? 8 : type_traits(type).block_size;
    const Operands op(type, 9, 3 * qk, 2, test_seed(900 + static_cast<uint64_t>(type)));
    GuardedBuffer shifted(op.w.size(), 2);
    shifted.upload(op.w.data(), op.w.size());
    GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
    cuda::quant_gemv({type, shifted.get(), op.k, op.n}, op.d_x.get<float>(), op.t, d_y.get<float>(), stream);
    stream.sync();
    const auto y = d_y.download<float>();
    const auto ref = op.reference_gemv();
    INFO("type ", type_label(type), " from a 2-byte-aligned copy");
    CHECK(normalized_error(y, ref, ref.size()) <= kGemvTolerance);
    CHECK(d_y.guards_intact());
  }
}

// Sets the GEMV path for one scope and restores the previous one.
struct GemvPathScope {
  cuda::GemvPath saved = cuda::gemv_path();
  explicit GemvPathScope(cuda::GemvPath p) { cuda::set_gemv_path(p); }
  ~GemvPathScope() { cuda::set_gemv_path(saved); }
};

TEST_CASE("the DIRECT and STAGED GEMV paths agree bit for bit and with the reference, aligned or not, batched or not") {
  Stream stream;
  uint64_t seed = test_seed(8300);
  const bool quick = quick_mode();
  for (GgmlType type : kInt8GemvTypes) {
    const int64_t qk = type_traits(type).block_size;
    // One block; an odd count of blocks; several 1024-element chunks (the direct path's register pipeline) with a
    // partial last one; K = 8192 at T = 8 (several x segments).
    const int64_t shapes[][2] = {{3, qk}, {17, 3 * qk}, {quick ? 19 : 133, 3328}, {21, 8192}};
    for (int64_t t : {1, 3, 8}) {
      for (const auto& sh : shapes) {
        for (int shift : {0, 2}) {
          const Operands op(type, sh[0], sh[1], t, ++seed);
          INFO("type ", type_label(type), ", N = ", op.n, ", K = ", op.k, ", T = ", t, ", weights shifted by ", shift,
               " bytes, seed ", seed);
          GuardedBuffer w(op.w.size(), static_cast<size_t>(shift));
          w.upload(op.w.data(), op.w.size());
          auto run = [&](cuda::GemvPath path) {
            const GemvPathScope scope(path);
            GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
            cuda::quant_gemv({type, w.get(), op.k, op.n}, op.d_x.get<float>(), op.t, d_y.get<float>(), stream);
            stream.sync();
            CHECK(d_y.guards_intact());
            return d_y.download<float>();
          };
          const auto staged = run(cuda::GemvPath::STAGED);
          const auto direct = run(cuda::GemvPath::DIRECT);
          CHECK(std::memcmp(staged.data(), direct.data(), staged.size() * 4) == 0);
          const auto ref = op.reference_gemv();
          CHECK(normalized_error(direct, ref, ref.size()) <= kGemvTolerance);
          CHECK(count_nans(direct) == 0);
        }
      }
    }
    // A fused batch of three matrices sharing x (odd row counts: CTAs straddle the matrix boundaries).
    const Operands a(type, 45, 2048, 2, ++seed), b2(type, 13, 2048, 2, ++seed), c(type, 70, 2048, 2, ++seed);
    auto run_batch = [&](cuda::GemvPath path) {
      const GemvPathScope scope(path);
      GuardedBuffer ya(static_cast<size_t>(2 * a.n) * 4), yb(static_cast<size_t>(2 * b2.n) * 4),
          yc(static_cast<size_t>(2 * c.n) * 4);
      const QuantMatrixView ws[3] = {a.device_view(), b2.device_view(), c.device_view()};
      float* ys[3] = {ya.get<float>(), yb.get<float>(), yc.get<float>()};
      cuda::quant_gemv_batch(ws, a.d_x.get<float>(), 2, ys, stream);
      stream.sync();
      CHECK(ya.guards_intact());
      CHECK(yb.guards_intact());
      CHECK(yc.guards_intact());
      return std::vector<std::vector<float>>{ya.download<float>(), yb.download<float>(), yc.download<float>()};
    };
    INFO("batch of three, type ", type_label(type));
    CHECK(run_batch(cuda::GemvPath::STAGED) == run_batch(cuda::GemvPath::DIRECT));
  }
}

TEST_CASE("quant_gemv_batch: one launch for matrices sharing x equals a reference per matrix") {
  Stream stream;
  uint64_t seed = test_seed(8100);
  // Same type (one fused launch), and mixed types (one launch each); odd row counts so CTAs straddle no matrix
  // boundary cleanly; K = 4096 at T = 8 takes two x segments.
  const std::vector<std::vector<GgmlType>> batches = {
      {GgmlType::Q4_0, GgmlType::Q4_0, GgmlType::Q4_0}, {GgmlType::Q8_0, GgmlType::Q8_0},
      {GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q4_K}, {GgmlType::Q6_K, GgmlType::Q6_K, GgmlType::Q6_K},
      {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q4_K}, {GgmlType::Q5_K, GgmlType::Q5_K}};
  const int64_t rows[] = {33, 5, 17};
  for (const auto& types : batches) {
    for (const auto& [k, t] : {std::pair<int64_t, int64_t>{768, 1}, {512, 3}, {4096, 8}}) {
      ++seed;
      INFO("first type ", type_label(types[0]), ", ", types.size(), " matrices, K = ", k, ", T = ", t, ", seed ", seed);
      const std::vector<float> x = random_floats(static_cast<size_t>(t * k), seed);
      GuardedBuffer d_x(x.size() * 4);
      d_x.upload(x.data(), x.size() * 4);
      std::vector<std::vector<uint8_t>> w;
      std::deque<GuardedBuffer> d_w, d_y;  // GuardedBuffer does not move
      std::vector<QuantMatrixView> views;
      std::vector<float*> outs;
      for (size_t i = 0; i < types.size(); ++i) {
        w.push_back(make_weights(types[i], rows[i], k, seed * 10 + i));
        d_w.emplace_back(w.back().size());
        d_w.back().upload(w.back().data(), w.back().size());
        d_y.emplace_back(static_cast<size_t>(t * rows[i]) * 4);
      }
      for (size_t i = 0; i < types.size(); ++i) {
        views.push_back({types[i], d_w[i].get(), k, rows[i]});
        outs.push_back(d_y[i].get<float>());
      }
      cuda::quant_gemv_batch(views, d_x.get<float>(), t, outs, stream);
      stream.sync();
      for (size_t i = 0; i < types.size(); ++i) {
        const std::vector<float> xs = gemv_uses_int8_x(types[i]) ? round_x_to_int8_blocks(x) : x;
        std::vector<float> ref(static_cast<size_t>(t * rows[i]));
        ref::matmul({types[i], w[i].data(), k, rows[i]}, xs.data(), t, ref.data());
        const auto y = d_y[i].download<float>();
        INFO("matrix ", i);
        CHECK(normalized_error(y, ref, ref.size()) <= kGemvTolerance);
        CHECK(count_nans(y) == 0);
        CHECK(d_y[i].guards_intact());
      }
    }
  }
  // Refusals before any launch: a count mismatch, a null weight, a null input, a null output.
  GuardedBuffer w1(18), x1(32 * 4), y1(4);
  const QuantMatrixView good{GgmlType::Q4_0, w1.get(), 32, 1}, null_weight{GgmlType::Q4_0, nullptr, 32, 1};
  float* one_out[1] = {y1.get<float>()};
  float* two_out[2] = {y1.get<float>(), y1.get<float>()};
  float* null_out[1] = {nullptr};
  const std::span<const QuantMatrixView> good_1(&good, 1), null_w_1(&null_weight, 1);
  CHECK_THROWS_AS(cuda::quant_gemv_batch(good_1, x1.get<float>(), 1, two_out, stream), Error);
  CHECK_THROWS_AS(cuda::quant_gemv_batch(null_w_1, x1.get<float>(), 1, one_out, stream), Error);
  CHECK_THROWS_AS(cuda::quant_gemv_batch(good_1, nullptr, 1, one_out, stream), Error);
  CHECK_THROWS_AS(cuda::quant_gemv_batch(good_1, x1.get<float>(), 1, null_out, stream), Error);
  stream.sync();
  CHECK(y1.download<uint8_t>()[0] == GuardedBuffer::kCanary);  // nothing ran
}

TEST_CASE("dequant_gemm matches ref::matmul within FP16 rounding, T = 9, 33, 512") {
  Stream stream;
  Cublas cublas;
  uint64_t seed = test_seed(9000);
  struct Case {
    int64_t t, n, k_blocks;
    bool all_types;
  };
  // FERRY_TEST_QUICK (sanitizer runs): the largest case shrinks to T = 65 (still several GEMM tiles), N = 37.
  const bool quick = quick_mode();
  const Case cases[] = {{9, 13, 3, true},
                        {9, quick ? 37 : 301, 4, true},
                        {33, 7, 2, false},
                        {33, 130, 8, false},
                        {quick ? 65 : 512, quick ? 37 : 301, 4, false}};
  for (const Case& c : cases) {
    for (GgmlType type : kGemvTypes) {
      const bool common = type == GgmlType::Q4_0 || type == GgmlType::Q4_K || type == GgmlType::Q6_K ||
                          type == GgmlType::Q8_0 || type == GgmlType::F16;
      if (!c.all_types && !common) continue;
      const int64_t qk = is_float_type(type) ? 32 : type_traits(type).block_size;
      const Operands op(type, c.n, c.k_blocks * qk, c.t, ++seed);
      INFO("type ", type_label(type), ", N = ", op.n, ", K = ", op.k, ", T = ", op.t, ", seed ", seed);
      const auto y = run_gemm(op, op.n, stream, cublas);
      const auto ref = op.reference();
      const auto ref16 = op.reference_fp16_operands();
      const double err = normalized_error(y, ref, ref.size());
      const double err16 = normalized_error(y, ref16, ref16.size());
      INFO("normalised error ", err, " (exact operands), ", err16, " (FP16 operands)");
      CHECK(err <= kGemmTolerance);
      CHECK(err16 <= kGemmRoundedTolerance);
      CHECK(count_nans(y) == 0);
    }
  }
}

TEST_CASE("dequant_gemm with a scratch of several tiles equals the one-tile result bit for bit") {
  Stream stream;
  Cublas cublas;
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q4_0, GgmlType::Q6_K}) {
    for (int64_t t : {int64_t{33}, quick_mode() ? int64_t{65} : int64_t{512}}) {
      const Operands op(type, 200, 1024, t, test_seed(4242 + t + static_cast<uint64_t>(type)));
      INFO("type ", type_label(type), ", T = ", t);
      const auto one = run_gemm(op, op.n, stream, cublas);
      const auto four = run_gemm(op, 64, stream, cublas);  // tiles of 64, 64, 64, 8 rows
      const auto two = run_gemm(op, 130, stream, cublas);  // rounded down to 128: tiles of 128, 72 rows
      const auto odd = run_gemm(op, 199, stream, cublas);  // 192 + 8
      CHECK(std::memcmp(one.data(), four.data(), one.size() * 4) == 0);
      CHECK(std::memcmp(one.data(), two.data(), one.size() * 4) == 0);
      CHECK(std::memcmp(one.data(), odd.data(), one.size() * 4) == 0);
      const auto ref = op.reference();
      CHECK(normalized_error(one, ref, ref.size()) <= kGemmTolerance);
    }
  }
}

TEST_CASE("dequant_gemm with activation scratch for fewer tokens than T (token chunks) equals one chunk bit for bit") {
  Stream stream;
  Cublas cublas;
  const int64_t t = quick_mode() ? 130 : 600;
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q6_K, GgmlType::F16}) {
    const Operands op(type, 136, 512, t, test_seed(5151 + static_cast<uint64_t>(type)));
    INFO("type ", type_label(type), ", T = ", t);
    const auto whole = run_gemm(op, op.n, stream, cublas);
    const auto ref = op.reference();
    CHECK(normalized_error(whole, ref, ref.size()) <= kGemmTolerance);
    // 64 tokens of scratch (the smallest allowed): chunks of ceil(T / ceil(T / 64)); about T / 3 (never below the
    // smallest, which dequant_gemm refuses: the quick mode's T = 130 once asked for 44); T - 1: two balanced chunks;
    // with row tiles as well.
    const int64_t third = std::max(device_sizing::kGemmMinTokenChunk + 1, t / 3 + 1);
    for (int64_t tokens : {device_sizing::kGemmMinTokenChunk, third, t - 1}) {
      INFO("activation scratch of ", tokens, " tokens: chunks of ",
           device_sizing::gemm_token_chunk(t, op.k, static_cast<size_t>(tokens * op.k)));
      CHECK(device_sizing::gemm_token_chunk(t, op.k, static_cast<size_t>(tokens * op.k)) < t);
      const auto chunked = run_gemm(op, op.n, stream, cublas, tokens);
      CHECK(std::memcmp(whole.data(), chunked.data(), whole.size() * 4) == 0);
      const auto tiled = run_gemm(op, 64, stream, cublas, tokens);  // row tiles of 64, 64, 8 too
      CHECK(std::memcmp(whole.data(), tiled.data(), whole.size() * 4) == 0);
      CHECK(count_nans(chunked) == 0);
    }
  }
}

TEST_CASE("dequant_gemm through an FP32 temporary (the benchmark's cast path) gives the direct path's values") {
  Stream stream;
  Cublas cublas;
  for (GgmlType type : {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q8_0}) {
    const Operands op(type, 150, 768, 40, test_seed(6161 + static_cast<uint64_t>(type)));
    INFO("type ", type_label(type));
    const auto direct = run_gemm(op, 64, stream, cublas);
    Scratch scratch(64, op.k, op.t);
    GuardedBuffer tmp(static_cast<size_t>(64 * op.k) * 4);
    scratch.view.fp32_tile = tmp.get<float>();
    GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
    cuda::dequant_gemm(op.device_view(), op.d_x.get<float>(), op.t, d_y.get<float>(), scratch.view, cublas, stream);
    stream.sync();
    CHECK(d_y.guards_intact());
    CHECK(tmp.guards_intact());
    const auto via = d_y.download<float>();
    // Both round the same FP32 value d·q to FP16 (the weights' only rounding), so the products agree bit for bit.
    CHECK(std::memcmp(direct.data(), via.data(), direct.size() * 4) == 0);
    const auto ref = op.reference();
    CHECK(normalized_error(via, ref, ref.size()) <= kGemmTolerance);
  }
}

TEST_CASE("dequant_gemm refuses scratch below one tile with BUDGET") {
  Stream stream;
  Cublas cublas;
  const Operands big(GgmlType::Q4_0, 100, 256, 12, test_seed(31));
  CHECK(cuda::gemm_min_weight_scratch(big.device_view()) == 64 * 256);
  const Operands small(GgmlType::Q4_0, 13, 256, 12, test_seed(32));
  CHECK(cuda::gemm_min_weight_scratch(small.device_view()) == 13 * 256);
  GuardedBuffer d_y(static_cast<size_t>(100 * 12) * 4);
  {
    Scratch s(63, 256, 12);
    CHECK(category_of([&] {
            cuda::dequant_gemm(big.device_view(), big.d_x.get<float>(), 12, d_y.get<float>(), s.view, cublas, stream);
          }) == ErrorCategory::BUDGET);
  }
  {
    Scratch s(12, 256, 12);
    CHECK(category_of([&] {
            cuda::dequant_gemm(small.device_view(), small.d_x.get<float>(), 12, d_y.get<float>(), s.view, cublas,
                               stream);
          }) == ErrorCategory::BUDGET);
  }
  {
    Scratch s(64, 256, 11);  // activation scratch for 11 tokens, called with 12 (below 64 tokens, no chunks)
    CHECK(category_of([&] {
            cuda::dequant_gemm(big.device_view(), big.d_x.get<float>(), 12, d_y.get<float>(), s.view, cublas, stream);
          }) == ErrorCategory::BUDGET);
  }
  {
    const Operands tall(GgmlType::Q4_0, 100, 256, 100, test_seed(33));
    Scratch s(64, 256, 63);  // one token short of the smallest chunk dequant_gemm takes
    GuardedBuffer tall_y(static_cast<size_t>(100 * 100) * 4);
    CHECK(device_sizing::gemm_min_activation_scratch(tall.device_view(), 100) == 64 * 256);
    CHECK(category_of([&] {
            cuda::dequant_gemm(tall.device_view(), tall.d_x.get<float>(), 100, tall_y.get<float>(), s.view, cublas,
                               stream);
          }) == ErrorCategory::BUDGET);
    stream.sync();
    CHECK(tall_y.download<uint8_t>()[0] == GuardedBuffer::kCanary);
  }
  stream.sync();
  CHECK(d_y.guards_intact());
  const auto untouched = d_y.download<uint8_t>();
  CHECK(untouched[0] == GuardedBuffer::kCanary);  // nothing was enqueued before the check
  CHECK(category_of([&] { cuda::quant_gemv(big.device_view(), big.d_x.get<float>(), 9, d_y.get<float>(), stream); }) ==
        ErrorCategory::INVALID_ARGUMENT);
  CHECK(category_of([&] {
          cuda::quant_gemv({GgmlType::Q8_1, big.d_w.get(), 256, 10}, big.d_x.get<float>(), 1, d_y.get<float>(), stream);
        }) == ErrorCategory::UNSUPPORTED);
}

TEST_CASE("matmul_batch: the fused GEMV launch equals one launch per matrix; other paths write each matrix's output") {
  Stream stream;
  Cublas cublas;
  CHECK(cuda::kGemvMaxTokens == 8);
  uint64_t seed = test_seed(9100);
  // One type (the GEMV path fuses the three into one launch) and mixed types (one launch each).
  const std::vector<std::vector<GgmlType>> type_sets = {{GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q4_K},
                                                        {GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0}};
  const int64_t rows[] = {70, 13, 129}, k = 512;
  for (const auto& types : type_sets)
    for (int64_t t : {1, 8, 9, 33}) {
      CAPTURE(t);
      CAPTURE(type_label(types[1]));
      const std::vector<float> x = random_floats(static_cast<size_t>(t * k), ++seed);
      GuardedBuffer d_x(x.size() * 4);
      d_x.upload(x.data(), x.size() * 4);
      std::deque<GuardedBuffer> d_w, d_batch, d_single;
      std::vector<QuantMatrixView> views;
      std::vector<float*> outs;
      for (size_t i = 0; i < types.size(); ++i) {
        const auto w = make_weights(types[i], rows[i], k, seed * 10 + i);
        d_w.emplace_back(w.size());
        d_w.back().upload(w.data(), w.size());
        views.push_back({types[i], d_w.back().get(), k, rows[i]});
        d_batch.emplace_back(static_cast<size_t>(t * rows[i]) * 4);
        d_single.emplace_back(static_cast<size_t>(t * rows[i]) * 4);
        outs.push_back(d_batch.back().get<float>());
        CHECK(cuda::matmul_uses_gemv(views.back(), t) == (t <= 8));
      }
      Scratch scratch(129, k, t);  // one scratch for the whole batch, as a layer has
      cuda::matmul_batch(views, d_x.get<float>(), t, outs, scratch.view, cublas, stream);
      for (size_t i = 0; i < types.size(); ++i)
        cuda::matmul(views[i], d_x.get<float>(), t, d_single[i].get<float>(), scratch.view, cublas, stream);
      stream.sync();
      CHECK(scratch.guards_intact());
      for (size_t i = 0; i < types.size(); ++i) {
        INFO("matrix ", i);
        const auto a = d_batch[i].download<float>(), b = d_single[i].download<float>();
        CHECK(count_nans(a) == 0);
        CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
        CHECK(d_batch[i].guards_intact());
      }
    }
}

TEST_CASE("matmul takes the GEMV up to 8 tokens and the GEMM above") {
  Stream stream;
  Cublas cublas;
  for (int64_t t : {8, 9}) {
    const Operands op(GgmlType::Q5_K, 77, 512, t, test_seed(600 + t));
    Scratch scratch(op.n, op.k, op.t);
    GuardedBuffer d_y(static_cast<size_t>(op.t * op.n) * 4);
    cuda::matmul(op.device_view(), op.d_x.get<float>(), t, d_y.get<float>(), scratch.view, cublas, stream);
    stream.sync();
    const auto y = d_y.download<float>();
    const auto direct = t <= cuda::kGemvMaxTokens ? run_gemv(op, stream) : run_gemm(op, op.n, stream, cublas);
    INFO("T = ", t);
    CHECK(std::memcmp(y.data(), direct.data(), y.size() * 4) == 0);
    const auto ref = t <= cuda::kGemvMaxTokens ? op.reference_gemv() : op.reference();
    CHECK(normalized_error(y, ref, ref.size()) <= (t <= cuda::kGemvMaxTokens ? kGemvTolerance : kGemmTolerance));
  }
}

// The fused GEMV (GemvFusion, CudaOps' fused ops) against the reference on x formed on the host the way the replaced
// ops form it (ref::rms_norm, or silu(gate) · up) and rounded to int8 blocks. The kernel's codes can differ from the
// host's where a value sits on a rounding boundary: the kernel quantizes x ⊙ w and applies 1 / rms to the outputs (the
// same codes in exact arithmetic, not always in float), and device expf may differ from the host's in the last bit.
// One moved code changes the outputs by about (1/127)² / K normalised (2e-6 at K = 32, 1.5e-8 at K = 4096), a wrong
// index, scale or token by 1e-2 or more: the tolerance allows a few moved codes at every K. Against the exactly formed
// x (no int8 rounding) the large shapes are held to the int8 GEMV's 2e-4.
double fused_tolerance(int64_t k) { return 1e-6 + 4e-4 / static_cast<double>(k); }

struct FusedCase {
  const char* name;
  cuda::GemvFusion::Input input;
  bool accumulate;
  bool norm_weight;  // RMS_NORM with a weight (else none: 1)
  int n_matrices;
};

// x as the fused kernel forms it, on the host.
std::vector<float> form_fused_input(const FusedCase& fc, const std::vector<float>& x, const std::vector<float>& up,
                                    const std::vector<float>& norm_weight, int64_t t, int64_t k, float eps) {
  std::vector<float> out(x.size());
  if (fc.input == cuda::GemvFusion::Input::RMS_NORM) {
    ref::rms_norm(x.data(), fc.norm_weight ? norm_weight.data() : nullptr, out.data(), t, k, eps);
  } else if (fc.input == cuda::GemvFusion::Input::SWIGLU) {
    for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] / (1.0f + std::exp(-x[i])) * up[i];
  } else {
    out = x;
  }
  return out;
}

TEST_CASE("quant_gemv_fused: the RMS norm, SwiGLU and the residual add inside the GEMV match the reference") {
  Stream stream;
  uint64_t seed = test_seed(9700);
  const bool quick = quick_mode();
  const float eps = 1e-5f;
  const FusedCase cases[] = {
      {"plain product (Q4_1 and Q5_K reach the int8 kernel only this way)", cuda::GemvFusion::Input::PLAIN, false,
       false, 2},
      {"residual add", cuda::GemvFusion::Input::PLAIN, true, false, 1},
      {"RMS norm, three matrices (q, k, v)", cuda::GemvFusion::Input::RMS_NORM, false, true, 3},
      {"RMS norm without a weight", cuda::GemvFusion::Input::RMS_NORM, false, false, 1},
      {"SwiGLU and the residual add", cuda::GemvFusion::Input::SWIGLU, true, false, 1},
  };
  const int64_t rows[] = {45, 13, 70};  // odd: CTAs straddle the matrices' boundaries
  for (GgmlType type : kFusedGemvTypes) {
    const int64_t qk = type_traits(type).block_size;
    // (K, T, x's byte offset): one block; an odd block count at an unaligned x (scalar loads); several 1024-element
    // chunks; K = 8192 at T = 8 (x cut into segments: the norm must still cover all of K).
    const int64_t shapes[][3] = {{qk, 1, 0}, {3 * qk, 3, 4}, {quick ? 1024 : 3328, 2, 0}, {8192, 8, 0}};
    for (const FusedCase& fc : cases) {
      for (const auto& sh : shapes) {
        const int64_t k = sh[0], t = sh[1];
        ++seed;
        INFO(fc.name, ", type ", type_label(type), ", K = ", k, ", T = ", t, ", x offset ", sh[2], ", seed ", seed);
        const auto x = random_floats(static_cast<size_t>(t * k), seed);
        const auto up = random_floats(static_cast<size_t>(t * k), seed + 1);
        const auto norm_weight = random_floats(static_cast<size_t>(k), seed + 2, 0.5f, 1.5f);
        GuardedBuffer d_x(x.size() * 4, static_cast<size_t>(sh[2])), d_up(up), d_nw(norm_weight);
        d_x.upload(x.data(), x.size() * 4);
        const auto formed = form_fused_input(fc, x, up, norm_weight, t, k, eps);
        const auto rounded = round_x_to_int8_blocks(formed);
        cuda::GemvFusion fusion;
        fusion.input = fc.input;
        fusion.norm_weight = fc.norm_weight ? d_nw.get<float>() : nullptr;
        fusion.eps = eps;
        fusion.up = d_up.get<float>();
        fusion.accumulate = fc.accumulate;
        std::vector<std::vector<uint8_t>> w;
        std::deque<GuardedBuffer> d_w;
        std::vector<QuantMatrixView> views;
        std::vector<std::vector<float>> y0;
        for (int m = 0; m < fc.n_matrices; ++m) {
          w.push_back(make_weights(type, rows[m], k, seed * 10 + static_cast<uint64_t>(m)));
          d_w.emplace_back(w.back().size());
          d_w.back().upload(w.back().data(), w.back().size());
          views.push_back({type, d_w.back().get(), k, rows[m]});
          y0.push_back(random_floats(static_cast<size_t>(t * rows[m]), seed * 10 + 5 + static_cast<uint64_t>(m)));
        }
        REQUIRE(cuda::gemv_fusable(views, t));
        auto run = [&](cuda::GemvPath path) {
          const GemvPathScope scope(path);
          std::deque<GuardedBuffer> d_y;
          std::vector<float*> outs;
          for (int m = 0; m < fc.n_matrices; ++m) {
            d_y.emplace_back(y0[static_cast<size_t>(m)]);  // what an accumulating product adds to
            outs.push_back(d_y.back().get<float>());
          }
          cuda::quant_gemv_fused(views, d_x.get<float>(), t, outs, fusion, stream);
          stream.sync();
          std::vector<std::vector<float>> ys;
          for (auto& d : d_y) {
            CHECK(d.guards_intact());
            ys.push_back(d.download<float>());
          }
          return ys;
        };
        const auto direct = run(cuda::GemvPath::DIRECT);
        CHECK(run(cuda::GemvPath::STAGED) == direct);
        for (int m = 0; m < fc.n_matrices; ++m) {
          const auto mi = static_cast<size_t>(m);
          std::vector<float> product = direct[mi];  // the product alone: y minus what it was added to
          if (fc.accumulate)
            for (size_t i = 0; i < product.size(); ++i) product[i] -= y0[mi][i];
          std::vector<float> ref(product.size()), exact(product.size());
          ref::matmul({type, w[mi].data(), k, rows[m]}, rounded.data(), t, ref.data());
          INFO("matrix ", m);
          CHECK(count_nans(direct[mi]) == 0);
          CHECK(normalized_error(product, ref, ref.size()) <= fused_tolerance(k));
          if (k >= 3328) {
            ref::matmul({type, w[mi].data(), k, rows[m]}, formed.data(), t, exact.data());
            CHECK(normalized_error(product, exact, exact.size()) <= kGemvInt8ExactTolerance);
          }
        }
      }
    }
  }
}

TEST_CASE("quant_gemv_fused: a non-finite input reaches only its token's outputs; what it cannot fuse it refuses") {
  Stream stream;
  const int64_t k = 512, n = 37, t = 3;
  const Operands op(GgmlType::Q4_K, n, k, t, test_seed(9800));
  // Token 1 holds a NaN: its norm is NaN, so every output of token 1 is NaN; tokens 0 and 2 are untouched by it.
  auto x = op.x;
  x[static_cast<size_t>(k + 5)] = std::nanf("");
  GuardedBuffer d_x(x), d_y(static_cast<size_t>(t * n) * 4);
  cuda::GemvFusion fusion;
  fusion.input = cuda::GemvFusion::Input::RMS_NORM;
  fusion.eps = 1e-6f;
  const QuantMatrixView view = op.device_view();
  float* out[1] = {d_y.get<float>()};
  cuda::quant_gemv_fused(std::span<const QuantMatrixView>(&view, 1), d_x.get<float>(), t, out, fusion, stream);
  stream.sync();
  const auto y = d_y.download<float>();
  for (int64_t tok = 0; tok < t; ++tok) {
    int64_t nans = 0;
    for (int64_t r = 0; r < n; ++r) nans += std::isnan(y[static_cast<size_t>(tok * n + r)]);
    INFO("token ", tok);
    CHECK(nans == (tok == 1 ? n : 0));
  }

  // Refusals, before anything runs: a type without the int8 kernel, too many tokens, four matrices, two K, SwiGLU
  // without its up input, a null output.
  GuardedBuffer y1(static_cast<size_t>(9 * n) * 4);
  const Operands f16(GgmlType::F16, n, k, 1, test_seed(9801));
  const QuantMatrixView f16_view = f16.device_view();
  const QuantMatrixView four[4] = {view, view, view, view};
  const QuantMatrixView two_k[2] = {view, {GgmlType::Q4_K, op.d_w.get(), 256, n}};
  float* outs[4] = {y1.get<float>(), y1.get<float>(), y1.get<float>(), y1.get<float>()};
  float* null_out[1] = {nullptr};
  CHECK_FALSE(cuda::gemv_fusable(std::span<const QuantMatrixView>(&f16_view, 1), 1));
  CHECK_FALSE(cuda::gemv_fusable(std::span<const QuantMatrixView>(&view, 1), 9));
  CHECK_FALSE(cuda::gemv_fusable(four, 1));
  CHECK_FALSE(cuda::gemv_fusable(two_k, 1));
  CHECK(cuda::gemv_fusable(std::span<const QuantMatrixView>(four, 3), 8));
  const cuda::GemvFusion plain;
  cuda::GemvFusion swiglu_no_up;
  swiglu_no_up.input = cuda::GemvFusion::Input::SWIGLU;
  auto refused = [&](auto&& call) { return category_of(call) == ErrorCategory::INVALID_ARGUMENT; };
  const std::span<const QuantMatrixView> one(&view, 1);
  CHECK(refused([&] {
    cuda::quant_gemv_fused(std::span<const QuantMatrixView>(&f16_view, 1), d_x.get<float>(), 1, outs, plain, stream);
  }));
  CHECK(refused([&] { cuda::quant_gemv_fused(one, d_x.get<float>(), 9, std::span(outs, 1), plain, stream); }));
  CHECK(refused([&] { cuda::quant_gemv_fused(four, d_x.get<float>(), 1, outs, plain, stream); }));
  CHECK(refused([&] { cuda::quant_gemv_fused(two_k, d_x.get<float>(), 1, std::span(outs, 2), plain, stream); }));
  CHECK(refused([&] { cuda::quant_gemv_fused(one, d_x.get<float>(), 1, std::span(outs, 1), swiglu_no_up, stream); }));
  CHECK(refused([&] { cuda::quant_gemv_fused(one, d_x.get<float>(), 1, null_out, plain, stream); }));
  CHECK(refused([&] { cuda::quant_gemv_fused(one, nullptr, 1, std::span(outs, 1), plain, stream); }));
  stream.sync();
  CHECK(y1.download<uint8_t>()[0] == GuardedBuffer::kCanary);  // nothing ran
}

}  // namespace
}  // namespace ferry::test
