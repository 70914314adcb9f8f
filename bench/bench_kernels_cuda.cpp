// bench_kernels_cuda: ferry's GPU dequantization, quantized GEMV and dequant + GEMM (kernels/cuda/) against the
// device's own limits, measured in the same run.
//
// What it measures (CUDA events on one stream, 2 warm-ups, median and min/max of --runs runs):
// - Limits: device-to-device cudaMemcpy of 1 GiB (rate = bytes read + written), cuBLAS FP16 GEMM
//   4096 x 3072 x 12288 (FP32 accumulate).
// - Dequantization of 2^26 elements of every type to FP16 and BF16: GB/s of bytes in + bytes out and % of the copy
//   rate; and the old path (FP32 temporary, then a cast) for comparison: time ratio and the 4 B/weight temporary it
//   needs. Inputs and outputs (>= 128 MB) are larger than L2.
// - GEMV at T = 1 on Llama/Mistral shapes for Q4_0, Q4_K, Q6_K, Q8_0 (+ every other type on one shape, Q4_1 and Q5_K
//   also through the fused entry, + T = 8):
//   GB/s of quantized weight bytes read and % of the copy rate. Each run reads the next of several weight copies
//   (>= 256 MB in all), so no run finds its weights in L2 (50 MB).
// - dequant_gemm (Q4_0) against cuBLAS on pre-dequantized FP16 weights (cublasGemmEx, same layouts) at T = 512 and
//   4096 on Llama-13B and Flux shapes: time ratio, with the parts measured alone (dequantization of W; x from
//   float32 to FP16, which the operation must do but the FP16 baseline is handed for free). Two scratch sizes: the
//   whole matrix (one tile) and 16 MiB tiles, i.e. what a small VRAM budget costs (every tile runs the algorithm
//   chosen for the whole matrix, see gemm.cu).
// Every kernel's output is checked before it is timed: dequantization bit-exact against ferry::ref::dequantize (on a
// prefix), GEMV against ferry::ref::matmul (normalised error), the GEMM against the cuBLAS baseline.
//
// Usage: bench_kernels_cuda [--runs R] [--quick] [-o results.json]
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "bench_cuda_common.hpp"
#include "bench_random_blocks.hpp"
#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/dequant.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/kernels/ref/ops.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace {

using ferry::GgmlType;
using nlohmann::json;
using namespace ferry::bench;

json to_json(const Stats& s) { return {{"median_s", s.median}, {"min_s", s.min}, {"max_s", s.max}}; }

std::string name(GgmlType t) { return std::string(ferry::type_name(t)); }

struct Context {
  cudaStream_t stream;
  Timer* timer;
  int runs;
  double copy_rate;  // bytes read + written per second
};

// ---- limits --------------------------------------------------------------------------------------------------
// cublasGemmEx FP16 x FP16 -> FP32 with the layout dequant_gemm uses: y[T, N] = x[T, K] W[N, K]^T.
void cublas_gemm(cublasHandle_t h, int64_t n, int64_t t, int64_t k, const __half* w, const __half* x, float* y) {
  const float alpha = 1.0f, beta = 0.0f;
  FERRY_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(t),
                                  static_cast<int>(k), &alpha, w, CUDA_R_16F, static_cast<int>(k), x, CUDA_R_16F,
                                  static_cast<int>(k), &beta, y, CUDA_R_32F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
}

double measure_cublas_peak(Context& c, cublasHandle_t h, Stats* out) {
  const int64_t n = 3072, t = 4096, k = 12288;
  DeviceMemory w(n * k * 2), x(t * k * 2), y(t * n * 4);
  w.fill(0x3c);  // 0x3c3c: a finite half (~1.06)
  x.fill(0x2c);
  const Stats s =
      c.timer->time(c.runs, [&](int) { cublas_gemm(h, n, t, k, w.as<__half>(), x.as<__half>(), y.as<float>()); });
  *out = s;
  return 2.0 * n * t * k / s.median;
}

// ---- dequantization -------------------------------------------------------------------------------------------
json bench_dequant(Context& c, GgmlType type, int64_t n, std::vector<std::string>& rows) {
  const auto host = random_quant_tensor(type, n, 11 + static_cast<uint64_t>(type));
  DeviceMemory src(host.size()), h(n * 2), b(n * 2), tmp(n * 4), cast(n * 2);
  src.upload(host.data(), host.size());

  // Validate on a prefix: FP16 equals the rounded reference bit for bit.
  const int64_t check_n = std::min<int64_t>(n, 1 << 20);
  ferry::cuda::dequantize_fp16(type, src.as(), h.as<__half>(), n, c.stream);
  FERRY_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  std::vector<float> ref(check_n);
  ferry::ref::dequantize(type, host.data(), ref.data(), check_n);
  std::vector<uint16_t> got(check_n);
  FERRY_CUDA_CHECK(cudaMemcpy(got.data(), h.as(), check_n * 2, cudaMemcpyDeviceToHost));
  int64_t bad = 0;
  for (int64_t i = 0; i < check_n; ++i) bad += got[i] != ferry::fp32_to_fp16(ref[i]);

  const double in = static_cast<double>(host.size()), out = 2.0 * n;
  const Stats s16 =
      c.timer->time(c.runs, [&](int) { ferry::cuda::dequantize_fp16(type, src.as(), h.as<__half>(), n, c.stream); });
  const Stats sb = c.timer->time(
      c.runs, [&](int) { ferry::cuda::dequantize_bf16(type, src.as(), b.as<__nv_bfloat16>(), n, c.stream); });
  const Stats s32 = c.timer->time(c.runs, [&](int) {
    ferry::cuda::dequantize_fp16_via_fp32(type, src.as(), tmp.as<float>(), cast.as<__half>(), n, c.stream);
  });
  const double rate16 = (in + out) / s16.median, rateb = (in + out) / sb.median;
  char line[512];
  std::snprintf(line, sizeof line, "| %s | %.3f | %.0f | %.0f%% | %.0f | %.0f%% | %.1f | %.2fx | 4 | %s |",
                name(type).c_str(), (in + out) / n, rate16 / 1e9, 100 * rate16 / c.copy_rate, rateb / 1e9,
                100 * rateb / c.copy_rate, (s16.max - s16.min) / s16.median * 100, s32.median / s16.median,
                bad == 0 ? "ok" : "MISMATCH");
  rows.push_back(line);
  return {{"type", name(type)},
          {"elements", n},
          {"bytes_in", in},
          {"bytes_out", out},
          {"fp16", {{"time", to_json(s16)}, {"GBps", rate16 / 1e9}, {"fraction_of_copy", rate16 / c.copy_rate}}},
          {"bf16", {{"time", to_json(sb)}, {"GBps", rateb / 1e9}, {"fraction_of_copy", rateb / c.copy_rate}}},
          {"via_fp32",
           {{"time", to_json(s32)},
            {"time_ratio_vs_direct", s32.median / s16.median},
            {"temporary_bytes_per_weight", 4},
            {"direct_temporary_bytes_per_weight", 0}}},
          {"checked_elements", check_n},
          {"mismatches", bad}};
}

// ---- GEMV ----------------------------------------------------------------------------------------------------
// fused_entry: through quant_gemv_fused with no fusion, the only way Q4_1 and Q5_K reach the int8-activation kernel
// until it has run on a GPU (quant_gemv keeps their FP32 decode).
json bench_gemv(Context& c, GgmlType type, int64_t n, int64_t k, int64_t t, std::vector<std::string>& rows,
                ferry::cuda::GemvPath path = ferry::cuda::GemvPath::STAGED, bool fused_entry = false) {
  ferry::cuda::set_gemv_path(path);
  const size_t wbytes = ferry::row_bytes(type, k) * static_cast<size_t>(n);
  const int copies = static_cast<int>(std::max<size_t>(2, ((size_t{256} << 20) + wbytes - 1) / wbytes));
  const auto host = random_quant_tensor(type, n * k, 21 + static_cast<uint64_t>(type) + static_cast<uint64_t>(n + k));
  DeviceMemory w(wbytes * copies), x(t * k * 4), y(t * n * 4);
  for (int i = 0; i < copies; ++i) w.upload(host.data(), wbytes, i * wbytes);
  Lcg rng(99);
  std::vector<float> hx(t * k);
  for (auto& f : hx) f = rng.uniform(-1.0f, 1.0f);
  x.upload(hx.data(), hx.size() * 4);
  auto view = [&](int i) { return ferry::QuantMatrixView{type, w.as<uint8_t>() + (i % copies) * wbytes, k, n}; };
  auto run = [&](int i) {
    if (!fused_entry) return ferry::cuda::quant_gemv(view(i), x.as<float>(), t, y.as<float>(), c.stream);
    const ferry::QuantMatrixView v = view(i);
    float* out = y.as<float>();
    ferry::cuda::quant_gemv_fused(std::span(&v, 1), x.as<float>(), t, std::span(&out, 1), {}, c.stream);
  };

  run(0);
  FERRY_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  std::vector<float> got(t * n), ref(t * n);
  FERRY_CUDA_CHECK(cudaMemcpy(got.data(), y.as(), got.size() * 4, cudaMemcpyDeviceToHost));
  ferry::ref::matmul({type, host.data(), k, n}, hx.data(), t, ref.data());
  const double err = normalized_error(got, ref);

  const Stats s = c.timer->time(c.runs, run);
  const double rate = static_cast<double>(wbytes) / s.median;
  char line[512];
  const std::string path_name = std::string(ferry::cuda::gemv_path_name(path)) + (fused_entry ? ", fused entry" : "");
  std::snprintf(line, sizeof line, "| %lld x %lld | %s | %s | %lld | %.1f | %.1f | %.0f | %.0f%% | %.1f | %.1e |",
                static_cast<long long>(n), static_cast<long long>(k), name(type).c_str(), path_name.c_str(),
                static_cast<long long>(t), wbytes / 1e6, s.median * 1e6, rate / 1e9, 100 * rate / c.copy_rate,
                (s.max - s.min) / s.median * 100, err);
  rows.push_back(line);
  return {{"type", name(type)},
          {"path", path_name},
          {"n", n},
          {"k", k},
          {"tokens", t},
          {"weight_bytes", wbytes},
          {"weight_copies", copies},
          {"time", to_json(s)},
          {"GBps", rate / 1e9},
          {"fraction_of_copy", rate / c.copy_rate},
          {"normalized_error_vs_ref", err}};
}

// ---- dequant + GEMM ------------------------------------------------------------------------------------------
json bench_gemm(Context& c, cublasHandle_t cublas, GgmlType type, int64_t n, int64_t k, int64_t t,
                std::vector<std::string>& rows) {
  const auto host = random_quant_tensor(type, n * k, 31 + static_cast<uint64_t>(n * 7 + k));
  DeviceMemory w(host.size()), w16(n * k * 2), x(t * k * 4), x16(t * k * 2), y_ref(t * n * 4), y(t * n * 4);
  DeviceMemory scratch_w(n * k * 2), scratch_x(t * k * 2), workspace(ferry::cuda::kGemmWorkspaceBytes);
  w.upload(host.data(), host.size());
  Lcg rng(7 + t);
  std::vector<float> hx(t * k);
  for (auto& f : hx) f = rng.uniform(-1.0f, 1.0f);
  x.upload(hx.data(), hx.size() * 4);
  // The baseline's inputs: the same weights and activations, already FP16.
  ferry::cuda::dequantize_fp16(type, w.as(), w16.as<__half>(), n * k, c.stream);
  ferry::cuda::dequantize_fp16(GgmlType::F32, x.as(), x16.as<__half>(), t * k, c.stream);
  const ferry::QuantMatrixView view{type, w.as(), k, n};
  auto scratch = [&](int64_t elems) {
    ferry::cuda::GemmScratch s;
    s.weight = scratch_w.as<__half>();
    s.weight_elems = static_cast<size_t>(elems);
    s.activations = scratch_x.as<__half>();
    s.activation_elems = static_cast<size_t>(t * k);
    s.workspace = workspace.as();
    s.workspace_bytes = workspace.bytes();
    return s;
  };
  const ferry::cuda::GemmScratch one_tile = scratch(n * k);
  const ferry::cuda::GemmScratch l2_tiles = scratch(std::max<int64_t>(8 << 20, 64 * k));  // 16 MiB of FP16

  cublas_gemm(cublas, n, t, k, w16.as<__half>(), x16.as<__half>(), y_ref.as<float>());
  ferry::cuda::dequant_gemm(view, x.as<float>(), t, y.as<float>(), one_tile, cublas, c.stream);
  FERRY_CUDA_CHECK(cudaStreamSynchronize(c.stream));
  FERRY_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> a(t * n), b(t * n);
  FERRY_CUDA_CHECK(cudaMemcpy(a.data(), y.as(), a.size() * 4, cudaMemcpyDeviceToHost));
  FERRY_CUDA_CHECK(cudaMemcpy(b.data(), y_ref.as(), b.size() * 4, cudaMemcpyDeviceToHost));
  const double err = normalized_error(a, b);

  const Stats sb = c.timer->time(
      c.runs, [&](int) { cublas_gemm(cublas, n, t, k, w16.as<__half>(), x16.as<__half>(), y_ref.as<float>()); });
  const Stats s1 = c.timer->time(c.runs, [&](int) {
    ferry::cuda::dequant_gemm(view, x.as<float>(), t, y.as<float>(), one_tile, cublas, c.stream);
  });
  const Stats s2 = c.timer->time(c.runs, [&](int) {
    ferry::cuda::dequant_gemm(view, x.as<float>(), t, y.as<float>(), l2_tiles, cublas, c.stream);
  });
  const Stats sd = c.timer->time(
      c.runs, [&](int) { ferry::cuda::dequantize_fp16(type, w.as(), scratch_w.as<__half>(), n * k, c.stream); });
  // x to FP16 alone: part of the operation (x arrives as float32) but not of the comparison's subject, the weights.
  const Stats sx = c.timer->time(c.runs, [&](int) {
    ferry::cuda::dequantize_fp16(GgmlType::F32, x.as(), scratch_x.as<__half>(), t * k, c.stream);
  });
  const double excl_x = (s1.median - sx.median) / sb.median;
  const double flops = 2.0 * n * t * k;
  char line[512];
  std::snprintf(line, sizeof line,
                "| %lld x %lld | %lld | %.0f | %.0f | %.1f | %.1f | %.2fx | %.2fx | %.2fx | %.1f | %.1e |",
                static_cast<long long>(n), static_cast<long long>(k), static_cast<long long>(t),
                flops / sb.median / 1e12, flops / s1.median / 1e12, sd.median * 1e6, sx.median * 1e6,
                s1.median / sb.median, excl_x, s2.median / sb.median, (s1.max - s1.min) / s1.median * 100, err);
  rows.push_back(line);
  return {{"type", name(type)},
          {"n", n},
          {"k", k},
          {"tokens", t},
          {"cublas_fp16", {{"time", to_json(sb)}, {"TFLOPs", flops / sb.median / 1e12}}},
          {"dequant_gemm_one_tile",
           {{"time", to_json(s1)}, {"TFLOPs", flops / s1.median / 1e12}, {"ratio_vs_cublas", s1.median / sb.median}}},
          {"dequant_gemm_16MiB_tiles",
           {{"time", to_json(s2)},
            {"ratio_vs_cublas", s2.median / sb.median},
            {"tile_rows", l2_tiles.weight_elems / static_cast<size_t>(k) / 64 * 64}}},
          {"dequant_alone", to_json(sd)},
          {"x_to_fp16_alone", to_json(sx)},
          {"ratio_vs_cublas_excluding_x_conversion", excl_x},
          {"normalized_error_vs_cublas", err}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPU dequantization, quantized GEMV and dequant+GEMM against copy bandwidth and cuBLAS"};
  int runs = 15;
  bool quick = false;
  std::string json_path;
  app.add_option("--runs", runs, "timed runs per measurement (median reported)")->check(CLI::Range(10, 1000));
  app.add_flag("--quick", quick, "fewer shapes (a smoke test, not a report)");
  bool gemv_only = false;
  app.add_flag("--gemv-only", gemv_only, "only the quantized GEMV section");
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t stream;
    FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasHandle_t cublas;
    FERRY_CUBLAS_CHECK(cublasCreate(&cublas));
    FERRY_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    Timer timer(stream);
    Context c{stream, &timer, runs, 0.0};

    Stats copy_stats, gemm_stats;
    c.copy_rate = measure_copy_rate(timer, stream, runs, &copy_stats);
    const double peak = measure_cublas_peak(c, cublas, &gemm_stats);
    const std::string build = std::string(FERRY_GIT_SHA) + dirty_suffix();

    std::printf("## GPU kernels: dequantization, GEMV, dequant + GEMM\n\n");
    std::printf("device: %s (%d SMs, L2 %d MiB); build %s; median of %d runs after 2 warm-ups (CUDA events)\n\n",
                prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, build.c_str(), runs);
    std::printf(
        "limits measured now: device copy %.2f TB/s (bytes read + written, 1 GiB); cuBLAS FP16 GEMM "
        "4096x3072x12288 %.0f TFLOP/s\n\n",
        c.copy_rate / 1e12, peak / 1e12);

    json j;
    j["device"] = prop.name;
    j["sm_count"] = prop.multiProcessorCount;
    j["build"] = gpu_build_json();
    j["runs"] = runs;
    j["limits"] = {{"copy_bytes_per_s", c.copy_rate},
                   {"copy", to_json(copy_stats)},
                   {"cublas_fp16_gemm_flops", peak},
                   {"cublas_fp16_gemm", to_json(gemm_stats)}};

    // Dequantization.
    std::vector<std::string> rows;
    const GgmlType all[] = {GgmlType::Q4_0,   GgmlType::Q4_1,   GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q2_K,   GgmlType::Q3_K,   GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K,
                            GgmlType::IQ4_NL, GgmlType::IQ4_XS, GgmlType::F16,  GgmlType::BF16, GgmlType::F32};
    const int64_t n_deq = quick ? (int64_t{1} << 22) : (int64_t{1} << 26);
    if (!gemv_only) {
      for (GgmlType t : all) j["dequant"].push_back(bench_dequant(c, t, n_deq, rows));
      std::printf("### Dequantization of %lld elements (FP16 and BF16 out; old path = FP32 temporary + cast)\n\n",
                  static_cast<long long>(n_deq));
      std::printf(
          "| type | B/elem moved | FP16 GB/s | FP16 %% of copy | BF16 GB/s | BF16 %% of copy | spread %% | "
          "old path time | old path tmp B/weight | check |\n");
      std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
      for (const auto& r : rows) std::printf("%s\n", r.c_str());
    }

    // GEMV.
    rows.clear();
    const int64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {5120, 13824}, {32000, 5120}};
    const GgmlType main_types[] = {GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q8_0};
    using ferry::cuda::GemvPath;
    for (const auto& s : shapes) {
      for (GgmlType t : main_types)
        for (GemvPath p : {GemvPath::STAGED, GemvPath::DIRECT})
          j["gemv"].push_back(bench_gemv(c, t, s[0], s[1], 1, rows, p));
      if (quick) break;
    }
    for (GgmlType t : all) {
      if (std::find(std::begin(main_types), std::end(main_types), t) != std::end(main_types)) continue;
      j["gemv"].push_back(bench_gemv(c, t, 14336, 4096, 1, rows));
    }
    // Q4_1 and Q5_K on the int8-activation kernel (fused entry, DIRECT) beside their FP32 decode above.
    for (GgmlType t : {GgmlType::Q4_1, GgmlType::Q5_K})
      for (const auto& s : {shapes[0], shapes[1]})
        j["gemv"].push_back(bench_gemv(c, t, s[0], s[1], 1, rows, GemvPath::DIRECT, true));
    for (GgmlType t : main_types)
      for (int64_t tokens : {2, 8})
        for (GemvPath p : {GemvPath::STAGED, GemvPath::DIRECT})
          j["gemv"].push_back(bench_gemv(c, t, 14336, 4096, tokens, rows, p));
    ferry::cuda::set_gemv_path(GemvPath::STAGED);
    std::printf("\n### Quantized GEMV (rate = quantized weight bytes / time)\n\n");
    std::printf("| N x K | type | path | T | weights MB | us | GB/s | %% of copy | spread %% | error vs ref |\n");
    std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (const auto& r : rows) std::printf("%s\n", r.c_str());

    // dequant + GEMM.
    rows.clear();
    const int64_t gemm_shapes[][2] = {{5120, 5120},  {13824, 5120}, {5120, 13824}, {9216, 3072},
                                      {12288, 3072}, {3072, 12288}, {21504, 3072}, {3072, 15360}};
    for (int64_t t : {512, 4096}) {
      if (gemv_only) break;
      for (const auto& s : gemm_shapes) {
        j["gemm"].push_back(bench_gemm(c, cublas, GgmlType::Q4_0, s[0], s[1], t, rows));
        if (quick) break;
      }
    }
    if (!gemv_only) {
      std::printf("\n### Q4_0 dequant + GEMM vs cuBLAS on pre-dequantized FP16 weights\n\n");
      std::printf(
          "| N x K | T | cuBLAS TFLOP/s | ours TFLOP/s | dequant alone us | x to FP16 alone us | ratio (one tile) "
          "| ratio excl. x to FP16 | ratio (16 MiB tiles) | spread %% | error vs cuBLAS |\n");
      std::printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
      for (const auto& r : rows) std::printf("%s\n", r.c_str());
    }

    if (!json_path.empty()) {
      if (!write_json_file(json_path, j)) throw ferry::Error(ferry::ErrorCategory::IO, "cannot write " + json_path);
    }
    cublasDestroy(cublas);
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
