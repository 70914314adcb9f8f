// bench_attention_cuda: ferry's GPU attention (kernels/cuda/attention*.cu) on the shapes that matter, against the
// device's own limits measured in the same run.
//
// What it measures (CUDA events on the working stream, 2 warm-ups, median and spread of --runs runs):
// - Flux block: n_q = n_kv = 4608 (4096 image + 512 text tokens), 24 heads, head_dim 128, no mask. The chunked
//   (tensor-core) path at several chunk sizes, i.e. scratch budgets, what attention() picks with a scratch for the
//   whole sequence, the flash kernel (no scratch); and the two cuBLAS GEMMs of a one-chunk run alone, which shows how
//   much of the time is the softmax and the score traffic. Reported as TFLOP/s (4 * n_q * n_kv * head_dim * heads) and
//   as a fraction of the cuBLAS FP16 GEMM rate.
// - llama prefill (causal; FLOPs counted for the visible keys only; chunked and flash, SmolLM2's head_dim 64 too) and
//   decode (one query over the KV cache; GB/s of K and V read against the device copy rate, with and without the
//   KV-split scratch).
// Limits measured here: cuBLAS FP16 GEMM 4096 x 3072 x 12288 (FP32 accumulate), device-to-device copy of 1 GiB (bytes
// read + written). Every variant's output is compared with a reference variant of the same shape before it is timed
// (normalised error; "ok" below 1e-6).
//
// Usage: bench_attention_cuda [--runs R] [-o results.json]
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_cuda_common.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/attention.cuh"
#include "ferry/kernels/cuda/check.cuh"

namespace {

using ferry::AttentionShape;
using namespace ferry::bench;

// Uniform values in [lo, hi) from a 64-bit LCG: fast enough for ~10^8 elements, never constant.
std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  Lcg rng(seed);
  for (auto& f : v) f = rng.uniform(lo, hi);
  return v;
}

template <class T>
void upload(DeviceMemory& dst, const std::vector<T>& v) {
  dst.upload(v.data(), v.size() * sizeof(T));
}

std::vector<float> download(const DeviceMemory& src, size_t n) {
  std::vector<float> v(n);
  FERRY_CUDA_CHECK(cudaMemcpy(v.data(), src.as<void>(), n * sizeof(float), cudaMemcpyDeviceToHost));
  return v;
}

double attention_flops(const AttentionShape& s) {
  double keys = 0;  // visible (query, key) pairs
  if (s.causal)
    for (int64_t i = 0; i < s.n_q; ++i) keys += static_cast<double>(std::min(s.n_kv, s.q_pos0 + i + 1));
  else
    keys = static_cast<double>(s.n_q) * static_cast<double>(s.n_kv);
  return 4.0 * keys * static_cast<double>(s.head_dim) * static_cast<double>(s.n_head);
}

struct Result {
  std::string name, variant;
  AttentionShape shape{};
  int64_t chunk = 0;  // 0: decode path
  size_t scratch_bytes = 0;
  Stats seconds;
  double flops = 0, kv_bytes = 0;
  double check_error = 0;  // against the shape's reference variant
};

// One shape's buffers (random q in [-4, 4], K and V in [-1, 1] as FP16) and its variants.
class AttentionCase {
 public:
  AttentionCase(const AttentionShape& s, uint64_t seed)
      : m_shape(s),
        m_q(static_cast<size_t>(s.n_q * s.n_head * s.head_dim) * 4),
        m_k(static_cast<size_t>(s.n_kv * s.n_kv_head * s.head_dim) * 2),
        m_v(m_k.bytes()),
        m_out(m_q.bytes()) {
    upload(m_q, random_floats(m_q.bytes() / 4, seed, -4.0f, 4.0f));
    for (DeviceMemory* kv : {&m_k, &m_v}) {
      const std::vector<float> f = random_floats(kv->bytes() / 2, seed + (kv == &m_k ? 1 : 2), -1.0f, 1.0f);
      std::vector<uint16_t> h(f.size());
      for (size_t i = 0; i < f.size(); ++i) h[i] = ferry::fp32_to_fp16(f[i]);
      upload(*kv, h);
    }
  }
  const AttentionShape& shape() const { return m_shape; }
  const DeviceMemory& k() const { return m_k; }
  const DeviceMemory& v() const { return m_v; }

  // Runs `variant` once for validation, then times it. chunk > 0: attention_chunked with that many rows of scratch;
  // chunk == 0: attention_decode with split scratch if `split`; chunk < 0: attention() with a whole-sequence scratch.
  // `flash`: attention_flash (no scratch; chunk is then ignored).
  Result run(const std::string& name, int64_t chunk, bool split, int runs, cudaStream_t stream, cublasHandle_t cublas,
             bool flash = false) {
    Result r;
    r.name = name;
    r.shape = m_shape;
    r.chunk = flash ? -1 : chunk;
    const bool decode = !flash && chunk == 0;
    r.scratch_bytes = flash    ? 0
                      : decode ? (split ? ferry::cuda::attention_scratch_bytes(m_shape, 1) : 0)
                               : ferry::cuda::attention_scratch_bytes(m_shape, chunk > 0 ? chunk : m_shape.n_q);
    if (decode && !ferry::cuda::attention_uses_decode(m_shape) && split)
      r.scratch_bytes = 0;  // attention_scratch_bytes sized the chunked path; the decode bench runs unsplit
    DeviceMemory scratch_mem(r.scratch_bytes);
    const ferry::cuda::AttentionScratch scratch{r.scratch_bytes ? scratch_mem.as<void>() : nullptr, r.scratch_bytes};
    const auto* q = m_q.as<float>();
    const auto* k = m_k.as<__half>();
    const auto* v = m_v.as<__half>();
    float* out = m_out.as<float>();
    const AttentionShape sh = m_shape;
    std::function<void()> fn;
    if (flash) {
      r.variant = "flash (fused kernel)";
      fn = [=] { ferry::cuda::attention_flash(sh, q, k, v, out, stream); };
    } else if (decode) {
      r.variant = split ? "decode, KV-split scratch" : "decode, no scratch";
      fn = [=] { ferry::cuda::attention_decode(sh, q, k, v, out, scratch, stream); };
    } else if (chunk > 0) {
      r.variant = "chunked";
      fn = [=] { ferry::cuda::attention_chunked(sh, q, k, v, out, scratch, chunk, cublas, stream); };
    } else {
      r.variant = "attention() auto";
      fn = [=] { ferry::cuda::attention(sh, q, k, v, out, scratch, cublas, stream); };
    }
    fn();
    FERRY_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<float> got = download(m_out, m_q.bytes() / 4);
    if (m_reference.empty()) m_reference = got;
    r.check_error = normalized_error(got, m_reference);
    if (!std::all_of(got.begin(), got.end(), [](float x) { return std::isfinite(x); })) r.check_error = INFINITY;
    Timer timer(stream);
    r.seconds = timer.time(runs, fn);
    r.flops = attention_flops(m_shape);
    r.kv_bytes = 2.0 * static_cast<double>(m_k.bytes());
    return r;
  }

 private:
  AttentionShape m_shape;
  DeviceMemory m_q, m_k, m_v, m_out;
  std::vector<float> m_reference;
};

AttentionShape shape(int64_t n_q, int64_t n_kv, int64_t n_head, int64_t n_kv_head, int64_t head_dim, bool causal) {
  return AttentionShape{n_q,      n_kv,
                        n_head,   n_kv_head,
                        head_dim, causal ? n_kv - n_q : 0,
                        causal,   1.0f / std::sqrt(static_cast<float>(head_dim))};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPU attention: Flux block, llama prefill and decode, against cuBLAS FP16 GEMM and copy rates"};
  int runs = 10;
  std::string json_path;
  app.add_option("--runs", runs, "timed runs per variant (median and spread; at least 10)")
      ->check(CLI::Range(10, 1000));
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    int device = 0;
    FERRY_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    cudaStream_t stream = nullptr;
    FERRY_CUDA_CHECK(cudaStreamCreate(&stream));
    cublasHandle_t cublas = nullptr;
    FERRY_CUBLAS_CHECK(cublasCreate(&cublas));
    FERRY_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    Timer timer(stream);

    // Limit 1: cuBLAS FP16 GEMM (FP16 in and out, FP32 accumulate), the shape of measuring.md.
    double gemm_tflops = 0;
    Stats gemm_s;
    {
      const int m = 4096, n = 3072, kk = 12288;
      DeviceMemory a(size_t{2} * m * kk), b(size_t{2} * kk * n), c(size_t{2} * m * n);
      a.fill(0x3c);  // ~1.0 in FP16 bits; values do not change speed
      b.fill(0x2c);
      const float one = 1.0f, zero = 0.0f;
      gemm_s = timer.time(runs, [&] {
        FERRY_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, kk, &one, b.as<void>(), CUDA_R_16F, kk,
                                        a.as<void>(), CUDA_R_16F, kk, &zero, c.as<void>(), CUDA_R_16F, n,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      gemm_tflops = 2.0 * m * n * kk / gemm_s.median / 1e12;
    }
    // Limit 2: device copy bandwidth (bytes read + written).
    double copy_tbps = 0;
    {
      const size_t bytes = size_t{1} << 30;
      DeviceMemory src(bytes), dst(bytes);
      src.fill(1);
      const Stats s = timer.time(runs, [&] {
        FERRY_CUDA_CHECK(cudaMemcpyAsync(dst.as<void>(), src.as<void>(), bytes, cudaMemcpyDeviceToDevice, stream));
      });
      copy_tbps = 2.0 * static_cast<double>(bytes) / s.median / 1e12;
    }

    std::vector<Result> results;
    {
      AttentionCase flux(shape(4608, 4608, 24, 24, 128, false), 1);
      results.push_back(flux.run("flux-block", 4608, false, runs, stream, cublas));  // reference variant first
      for (int64_t chunk : {2304, 1152, 512, 256, 128, 64})
        results.push_back(flux.run("flux-block", chunk, false, runs, stream, cublas));
      results.push_back(flux.run("flux-block", -1, false, runs, stream, cublas));
      results.push_back(flux.run("flux-block", 0, false, runs, stream, cublas, true));

      // The two GEMMs of a one-chunk run alone (same shapes and layouts as attention_chunked issues them).
      const AttentionShape& s = flux.shape();
      const int hd = 128, heads = 24, nq = 4608, nkv = 4608, ld = 4608;
      DeviceMemory qh(size_t{2} * nq * heads * hd), scores(size_t{4} * nq * heads * ld), o(size_t{4} * nq * heads * hd);
      qh.fill(0x2c);
      scores.fill(0x2c);
      const float one = 1.0f, zero = 0.0f;
      const Stats gemms = timer.time(runs, [&] {
        FERRY_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            cublas, CUBLAS_OP_T, CUBLAS_OP_N, nkv, nq, hd, &one, flux.k().as<void>(), CUDA_R_16F, heads * hd, hd,
            qh.as<void>(), CUDA_R_16F, hd, int64_t{nq} * hd, &zero, scores.as<void>(), CUDA_R_32F, ld, int64_t{nq} * ld,
            heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        FERRY_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
            cublas, CUBLAS_OP_N, CUBLAS_OP_N, hd, nq, nkv, &one, flux.v().as<void>(), CUDA_R_16F, heads * hd, hd,
            scores.as<void>(), CUDA_R_16F, 2 * ld, int64_t{nq} * 2 * ld, &zero, o.as<void>(), CUDA_R_32F, hd,
            int64_t{nq} * hd, heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      });
      Result g;
      g.name = "flux-block";
      g.variant = "the two GEMMs alone (no softmax)";
      g.shape = s;
      g.chunk = 4608;
      g.seconds = gemms;
      g.flops = attention_flops(s);
      g.check_error = NAN;  // nothing to validate: the scores are not a softmax output
      results.push_back(g);
    }
    {
      AttentionCase llama8(shape(4096, 4096, 32, 8, 128, true), 3);
      results.push_back(llama8.run("llama-3-8b prefill 4096", 4096, false, runs, stream, cublas));
      for (int64_t chunk : {1024, 256})
        results.push_back(llama8.run("llama-3-8b prefill 4096", chunk, false, runs, stream, cublas));
      results.push_back(llama8.run("llama-3-8b prefill 4096", -1, false, runs, stream, cublas));
      results.push_back(llama8.run("llama-3-8b prefill 4096", 0, false, runs, stream, cublas, true));
    }
    {
      AttentionCase llama13(shape(512, 512, 40, 40, 128, true), 4);
      results.push_back(llama13.run("llama-2-13b prefill 512", 512, false, runs, stream, cublas));
      results.push_back(llama13.run("llama-2-13b prefill 512", -1, false, runs, stream, cublas));
      results.push_back(llama13.run("llama-2-13b prefill 512", 0, false, runs, stream, cublas, true));
    }
    {
      AttentionCase smol(shape(512, 512, 9, 3, 64, true), 6);
      results.push_back(smol.run("smollm2-135m prefill 512", 512, false, runs, stream, cublas));
      results.push_back(smol.run("smollm2-135m prefill 512", 0, false, runs, stream, cublas, true));
    }
    for (const auto& [name, s] :
         {std::pair{std::string("llama-3-8b decode, 4096 cached"), shape(1, 4096, 32, 8, 128, true)},
          std::pair{std::string("llama-2-13b decode, 512 cached"), shape(1, 512, 40, 40, 128, true)},
          std::pair{std::string("llama-2-13b decode, 4096 cached"), shape(1, 4096, 40, 40, 128, true)}}) {
      AttentionCase dec(s, 5);
      results.push_back(dec.run(name, 0, false, runs, stream, cublas));
      results.push_back(dec.run(name, 0, true, runs, stream, cublas));
    }

    std::printf("## GPU attention\n\n");
    std::printf("device: %s (%d SMs, L2 %d MiB); build %s%s; median of %d runs after 2 warm-ups (CUDA events)\n\n",
                prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, FERRY_GIT_SHA,
                FERRY_GIT_DIRTY ? " (dirty)" : "", runs);
    std::printf("limits measured now: cuBLAS FP16 GEMM 4096x3072x12288 %.0f TFLOP/s; device copy %.2f TB/s\n\n",
                gemm_tflops, copy_tbps);
    std::printf(
        "| case | variant | chunk | scratch MiB | ms (median) | ms (min .. max) | TFLOP/s | of GEMM rate | "
        "KV GB/s | of copy | check |\n");
    std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for (const Result& r : results) {
      const double tflops = r.flops / r.seconds.median / 1e12;
      const double kv_gbps = r.kv_bytes / r.seconds.median / 1e9;
      std::printf(
          "| %s | %s | %lld | %.1f | %.3f | %.3f .. %.3f | %.1f | %.1f%% | %s | %s | %s |\n", r.name.c_str(),
          r.variant.c_str(), static_cast<long long>(r.chunk), static_cast<double>(r.scratch_bytes) / (1 << 20),
          r.seconds.median * 1e3, r.seconds.min * 1e3, r.seconds.max * 1e3, tflops, 100.0 * tflops / gemm_tflops,
          r.chunk == 0 ? std::to_string(static_cast<int>(kv_gbps)).c_str() : "-",
          r.chunk == 0 ? (std::to_string(static_cast<int>(100.0 * kv_gbps / (copy_tbps * 1000.0))) + "%").c_str() : "-",
          std::isnan(r.check_error) ? "-"
          : r.check_error <= 1e-6   ? "ok"
                                    : ("MISMATCH " + std::to_string(r.check_error)).c_str());
    }
    std::printf(
        "\nKV GB/s: bytes of K and V read once per call; 'of copy' compares them with the copy rate's bytes read + "
        "written (the memory traffic the device sustains).\n");

    if (!json_path.empty()) {
      nlohmann::json j;
      j["benchmark"] = "attention_cuda";
      j["build"] = {{"git_sha", FERRY_GIT_SHA}, {"git_dirty", FERRY_GIT_DIRTY != 0}};
      j["device"] = {{"name", prop.name}, {"sm_count", prop.multiProcessorCount}, {"l2_bytes", prop.l2CacheSize}};
      j["parameters"] = {{"runs", runs}, {"warmup_runs", 2}, {"timer", "cuda events"}};
      j["limits"] = {{"cublas_fp16_gemm_tflops", gemm_tflops},
                     {"cublas_gemm_shape", "4096x3072x12288"},
                     {"device_copy_tbps_read_plus_write", copy_tbps}};
      for (const Result& r : results) {
        const double tflops = r.flops / r.seconds.median / 1e12;
        j["results"].push_back({
            {"case", r.name},
            {"variant", r.variant},
            {"n_q", r.shape.n_q},
            {"n_kv", r.shape.n_kv},
            {"n_head", r.shape.n_head},
            {"n_kv_head", r.shape.n_kv_head},
            {"head_dim", r.shape.head_dim},
            {"causal", r.shape.causal},
            {"chunk", r.chunk},
            {"scratch_bytes", r.scratch_bytes},
            {"seconds", {{"median", r.seconds.median}, {"min", r.seconds.min}, {"max", r.seconds.max}}},
            {"flops", r.flops},
            {"tflops", tflops},
            {"ratio_to_gemm", tflops / gemm_tflops},
            {"kv_gbps", r.kv_bytes / r.seconds.median / 1e9},
            {"check_normalized_error", r.check_error},
        });
      }
      std::ofstream f(json_path);
      f << j.dump(2) << "\n";
      if (!f) {
        std::cerr << "cannot write " << json_path << "\n";
        return 1;
      }
    }
    cublasDestroy(cublas);
    cudaStreamDestroy(stream);
  } catch (const ferry::Error& e) {
    std::cerr << "bench_attention_cuda: " << ferry::category_name(e.category()) << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}
