// bench_decode_step_cuda: one llama block's decode step (one token) with the fused ops on and off
// (CudaOps::set_fused_ops, FERRY_FUSED_OPS), replayed as CUDA graphs the way the engine replays resident decode
// steps (offload/src/cuda/decode_graphs.cpp), on the block shapes of SmolLM2-135M (Q4_1, its real type) and
// Llama-3-8B (Q4_0, Q4_K).
//
// What it measures (CUDA events, 2 warm-ups, median and min/max of --runs rounds): each graph holds kBlocksPerGraph
// consecutive block steps (llama_block_forward at position 300 of a 512-position FP16 cache), each on the next of
// several copies of the block's weights (>= 256 MB in all, so a block does not find its weights in L2, as in a model
// of many blocks); a round launches every graph back to back (the host's launch of the first is the only gap it
// times). Reported per block: microseconds, the weights' bytes over that time against the device copy rate measured
// in the same run, and fused ÷ unfused. For SmolLM2's Q4_1 that ratio is the engine's (fused ops also move Q4_1 from
// the FP32-decode GEMV to the int8 one); for Q4_0 and Q4_K it is the fusion alone. The graphs hold the same kernels the
// engine's graphs would (the step position is not read on the device here: every replay is the same position). Before
// timing, one block step of each kind from the same input is compared (normalised error of the block's output; fused
// ops differ by rounding only).
//
// Usage: bench_decode_step_cuda [--runs R] [-o results.json]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bench_cuda_common.hpp"
#include "bench_random_blocks.hpp"
#include "ferry/error.hpp"
#include "ferry/half.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/cuda_ops.cuh"
#include "ferry/models/llama/block.hpp"

namespace {

using ferry::GgmlType;
using nlohmann::json;
using namespace ferry::bench;

constexpr int kBlocksPerGraph = 8;
constexpr int64_t kContext = 512, kPosition = 300;

struct Shape {
  const char* model;
  int64_t n_embd, n_ff, n_head, n_head_kv;
  float rope_base;
  GgmlType type;
};

ferry::LlamaConfig config_of(const Shape& s) {
  ferry::LlamaConfig c;
  c.n_layer = 1;
  c.n_embd = s.n_embd;
  c.n_ff = s.n_ff;
  c.n_head = s.n_head;
  c.n_head_kv = s.n_head_kv;
  c.n_vocab = 1;
  c.n_ctx_train = kContext;
  c.rope_freq_base = s.rope_base;
  return c;
}

// One block's device state: `copies` copies of its seven matrices, its norms, a KV cache, its workspace and x.
class Block {
 public:
  Block(const ferry::LlamaConfig& c, GgmlType type, uint64_t seed)
      : m_c(c), m_type(type), m_shapes{{c.n_embd_q(), c.n_embd}, {c.n_embd_kv(), c.n_embd}, {c.n_embd_kv(), c.n_embd},
                                       {c.n_embd, c.n_embd_q()}, {c.n_ff, c.n_embd},        {c.n_ff, c.n_embd},
                                       {c.n_embd, c.n_ff}} {
    std::vector<std::vector<uint8_t>> host;
    for (const auto& [rows, cols] : m_shapes) {
      host.push_back(random_quant_tensor(type, rows * cols, seed++));
      m_offsets.push_back(m_block_bytes);
      m_block_bytes += host.back().size();
    }
    m_copies = static_cast<int>(std::max<size_t>(2, ((size_t{256} << 20) + m_block_bytes - 1) / m_block_bytes));
    m_weights = std::make_unique<DeviceMemory>(m_block_bytes * static_cast<size_t>(m_copies));
    for (int i = 0; i < m_copies; ++i)
      for (size_t m = 0; m < host.size(); ++m)
        m_weights->upload(host[m].data(), host[m].size(), static_cast<size_t>(i) * m_block_bytes + m_offsets[m]);
    Lcg rng(seed);
    std::vector<float> norms(static_cast<size_t>(2 * c.n_embd));
    for (auto& v : norms) v = rng.uniform(0.5f, 1.5f);
    m_norms = std::make_unique<DeviceMemory>(norms.size() * 4);
    m_norms->upload(norms.data(), norms.size() * 4);
    // A cache of random FP16 values, so attention reads finite keys and values at every position.
    std::vector<uint16_t> cache(static_cast<size_t>(2 * kContext * c.n_embd_kv()));
    for (auto& h : cache) h = ferry::fp32_to_fp16(rng.uniform(-1.0f, 1.0f));
    m_cache = std::make_unique<DeviceMemory>(cache.size() * 2);
    m_cache->upload(cache.data(), cache.size() * 2);
    const size_t ws = ferry::LlamaBlockBuffers::workspace_floats(c, 1, kContext, ferry::Device::GPU);
    m_workspace = std::make_unique<DeviceMemory>(ws * 4);
    m_x0.resize(static_cast<size_t>(c.n_embd));
    for (auto& v : m_x0) v = rng.uniform(-1.0f, 1.0f);
    m_x = std::make_unique<DeviceMemory>(m_x0.size() * 4);
    reset_x();
  }

  size_t block_bytes() const { return m_block_bytes; }
  int copies() const { return m_copies; }
  void reset_x() const { m_x->upload(m_x0.data(), m_x0.size() * 4); }
  std::vector<float> x() const {
    std::vector<float> v(m_x0.size());
    FERRY_CUDA_CHECK(cudaMemcpy(v.data(), m_x->as(), v.size() * 4, cudaMemcpyDeviceToHost));
    return v;
  }

  // One decode step of the block on weight copy `copy`, enqueued on ops' stream.
  void step(ferry::CudaOps& ops, int copy) const {
    auto view = [&](size_t m) {
      return ferry::QuantMatrixView{m_type,
                                    m_weights->as<uint8_t>() + static_cast<size_t>(copy) * m_block_bytes + m_offsets[m],
                                    m_shapes[m].second, m_shapes[m].first};
    };
    ferry::LlamaLayerWeights w{};
    w.attn_norm = m_norms->as<float>();
    w.ffn_norm = m_norms->as<float>() + m_c.n_embd;
    w.wq = view(0), w.wk = view(1), w.wv = view(2), w.wo = view(3);
    w.w_gate = view(4), w.w_up = view(5), w.w_down = view(6);
    uint16_t* cache = m_cache->as<uint16_t>();
    const ferry::LlamaKvView kv{cache, cache + kContext * m_c.n_embd_kv(), kContext};
    const auto b = ferry::LlamaBlockBuffers::carve(m_c, 1, kContext, ferry::Device::GPU, m_workspace->as<float>());
    ferry::llama_block_forward(ops, m_c, w, kv, b, m_x->as<float>(), 1, kPosition);
  }

 private:
  ferry::LlamaConfig m_c;
  GgmlType m_type;
  std::vector<std::pair<int64_t, int64_t>> m_shapes;  // (rows, cols) of wq, wk, wv, wo, gate, up, down
  std::vector<size_t> m_offsets;
  size_t m_block_bytes = 0;
  int m_copies = 2;
  std::unique_ptr<DeviceMemory> m_weights, m_norms, m_cache, m_workspace, m_x;
  std::vector<float> m_x0;
};

// kBlocksPerGraph block steps on consecutive weight copies, starting at `first`, captured as one graph.
cudaGraphExec_t capture(ferry::CudaOps& ops, const Block& block, int first, cudaStream_t stream) {
  FERRY_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < kBlocksPerGraph; ++i) block.step(ops, (first + i) % block.copies());
  cudaGraph_t graph = nullptr;
  FERRY_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  FERRY_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  FERRY_CUDA_CHECK(cudaGraphDestroy(graph));
  return exec;
}

json bench_shape(const Shape& s, cudaStream_t stream, cublasHandle_t cublas, Timer& timer, int runs, double copy_rate,
                 std::vector<std::string>& rows) {
  const ferry::LlamaConfig c = config_of(s);
  const Block block(c, s.type, 1000 + static_cast<uint64_t>(s.type));
  ferry::CudaOps ops(stream, cublas, ferry::cuda::GemmScratch{});  // one token: GEMVs only, no GEMM scratch

  // The same step both ways from the same x and cache (the step rewrites one cache row with the same values).
  std::vector<float> out[2];
  for (int fused = 0; fused < 2; ++fused) {
    ops.set_fused_ops(fused == 1);
    block.reset_x();
    block.step(ops, 0);
    FERRY_CUDA_CHECK(cudaStreamSynchronize(stream));
    out[fused] = block.x();
  }
  const double err = normalized_error(out[1], out[0]);

  json arms = json::array();
  double us[2] = {0, 0};
  for (int fused = 0; fused < 2; ++fused) {
    ops.set_fused_ops(fused == 1);
    std::vector<cudaGraphExec_t> graphs;
    const int n_graphs = std::max(1, block.copies() / kBlocksPerGraph);
    for (int g = 0; g < n_graphs; ++g) graphs.push_back(capture(ops, block, g * kBlocksPerGraph, stream));
    block.reset_x();
    const Stats st = timer.time(runs, [&] {
      for (cudaGraphExec_t g : graphs) FERRY_CUDA_CHECK(cudaGraphLaunch(g, stream));
    });
    const double blocks = static_cast<double>(graphs.size()) * kBlocksPerGraph;
    for (cudaGraphExec_t g : graphs) FERRY_CUDA_CHECK(cudaGraphExecDestroy(g));
    const std::vector<float> x = block.x();
    const bool finite = std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
    us[fused] = st.median / blocks * 1e6;
    const double rate = static_cast<double>(block.block_bytes()) / (st.median / blocks);
    char line[512];
    std::snprintf(line, sizeof line, "| %s | %s | %s | %.2f | %.1f | %.0f | %.0f%% | %.1f | %s |", s.model,
                  std::string(ferry::type_name(s.type)).c_str(), fused ? "on" : "off", block.block_bytes() / 1e6,
                  us[fused], rate / 1e9, 100 * rate / copy_rate, (st.max - st.min) / st.median * 100,
                  finite ? "finite" : "NON-FINITE");
    rows.push_back(line);
    arms.push_back({{"fused_ops", fused == 1},
                    {"us_per_block", us[fused]},
                    {"blocks_per_round", blocks},
                    {"time_per_round", {{"median_s", st.median}, {"min_s", st.min}, {"max_s", st.max}}},
                    {"weights_GBps", rate / 1e9},
                    {"fraction_of_copy", rate / copy_rate},
                    {"output_finite", finite}});
  }
  char line[256];
  std::snprintf(line, sizeof line, "| %s | %s | fused ÷ unfused time | | %.3f | | | | error %.1e |", s.model,
                std::string(ferry::type_name(s.type)).c_str(), us[1] / us[0], err);
  rows.push_back(line);
  return {{"model", s.model},
          {"type", std::string(ferry::type_name(s.type))},
          {"n_embd", s.n_embd},
          {"n_ff", s.n_ff},
          {"n_head", s.n_head},
          {"n_head_kv", s.n_head_kv},
          {"block_weight_bytes", block.block_bytes()},
          {"weight_copies", block.copies()},
          {"blocks_per_graph", kBlocksPerGraph},
          {"fused_vs_unfused_normalized_error", err},
          {"fused_over_unfused_time", us[1] / us[0]},
          {"arms", arms}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"one llama block's decode step, fused ops on and off, as CUDA graphs"};
  int runs = 30;
  std::string json_path;
  app.add_option("--runs", runs, "timed graph launches per measurement (median reported)")->check(CLI::Range(10, 1000));
  app.add_option("-o,--output", json_path, "write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);
  try {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      std::fprintf(stderr, "bench_decode_step_cuda: no CUDA device\n");
      return 77;
    }
    cudaDeviceProp prop{};
    FERRY_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t stream;
    FERRY_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cublasHandle_t cublas;
    FERRY_CUBLAS_CHECK(cublasCreate(&cublas));
    FERRY_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    Timer timer(stream);
    Stats copy_stats;
    const double copy_rate = measure_copy_rate(timer, stream, runs, &copy_stats);
    std::printf("## One llama block's decode step, fused ops on and off (CUDA graphs of %d blocks)\n\n",
                kBlocksPerGraph);
    std::printf(
        "device: %s (%d SMs); build %s%s; median of %d graph launches after 2 warm-ups (CUDA events); device "
        "copy %.2f TB/s measured now\n\n",
        prop.name, prop.multiProcessorCount, FERRY_GIT_SHA, dirty_suffix(), runs, copy_rate / 1e12);
    // SmolLM2's Q4_1 last: its fused arm is the int8 kernel's first Q4_1 run, and a fault there must not cost the
    // other shapes' rows (each is printed as it finishes; a shape that fails is reported and the rest still run,
    // unless the fault left the CUDA context unusable).
    const Shape shapes[] = {{"Llama-3-8B", 4096, 14336, 32, 8, 500000.0f, GgmlType::Q4_0},
                            {"Llama-3-8B", 4096, 14336, 32, 8, 500000.0f, GgmlType::Q4_K},
                            {"SmolLM2-135M", 576, 1536, 9, 3, 100000.0f, GgmlType::Q4_1}};
    json j;
    j["device"] = prop.name;
    j["build"] = gpu_build_json();
    j["runs"] = runs;
    j["copy_bytes_per_s"] = copy_rate;
    std::printf("| model | type | fused ops | block weights MB | us per block | GB/s | %% of copy | spread %% | x |\n");
    std::printf("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
    int failed = 0;
    for (const Shape& s : shapes) {
      std::vector<std::string> rows;
      try {
        j["shapes"].push_back(bench_shape(s, stream, cublas, timer, runs, copy_rate, rows));
      } catch (const std::exception& e) {
        ++failed;
        rows.push_back(std::string("| ") + s.model + " | " + std::string(ferry::type_name(s.type)) +
                       " | FAILED: " + e.what() + " | | | | | | |");
        j["failures"].push_back(
            {{"model", s.model}, {"type", std::string(ferry::type_name(s.type))}, {"error", e.what()}});
      }
      for (const auto& r : rows) std::printf("%s\n", r.c_str());
      std::fflush(stdout);
    }
    if (!json_path.empty() && !write_json_file(json_path, j))
      throw ferry::Error(ferry::ErrorCategory::IO, "cannot write " + json_path);
    if (failed > 0) return 1;
    cublasDestroy(cublas);
    cudaStreamDestroy(stream);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode_step_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
