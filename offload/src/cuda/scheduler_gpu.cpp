// The GPU engine of LayerScheduler: one step over a stack of RESIDENT, STREAMED and CPU layers.
//
// Roofline. A streamed layer costs max(copy, compute) once copies overlap compute, and copy + compute when they do
// not. Copy = quantized bytes / pinned H2D rate (~55 GB/s on the H100, 12-25 GB/s on PCIe 4 cards); compute grows with
// T (2*T FLOPs per weight) while the copy does not, so for large T (prefill, diffusion) streaming hides behind compute
// and the step costs what the all-resident step costs; for T = 1 the copy dominates and the step runs at the copy
// rate. The engine's job is to make those two bounds the real ones: copies never wait on anything but a free slot,
// compute never waits on anything but its own layer's copy, and neither waits on the host.
//
// Technique.
// - Two streams: `compute` runs every GPU layer in order; `copy` moves streamed layers from the pinned pool into S
//   staging slots in the arena. Streamed layer k (k-th STREAMED layer of the stack) uses slot k mod S.
// - Copy of streamed layer k: waits for slot_free[k mod S] (recorded on compute after the slot's previous user,
//   layer k - S, finished), then one cudaMemcpyAsync of the layer's whole span; copy_end[k] is recorded after it.
// - Compute of streamed layer k: waits for copy_end[k]; after its kernels, records slot_free[k mod S].
// - Copies are issued S - 1 layers ahead: just before compute k is enqueued, the copy of k + S - 1 is (its slot's
//   previous user, k - 1, was enqueued already, so the wait is on an event that is recorded, not a future one).
// - CPU layer: compute copies x to a pinned host buffer, records an event; the host waits for that event (the one
//   place the host waits on the GPU inside a step), runs the layer on the oneTBB arena, and enqueues the copy back.
//   Copies already in flight keep going while the CPU works.
// - With SchedulerOptions::link_gbps, each copy is a PacedCopy (cuda/paced_copy.hpp): chunks, with host functions on
//   the copy stream that hold it to the simulated link's rate. Events and waits are unchanged, so copy spans, the
//   trace and the overlap with compute are those of the slower link.
// - Activations go up on the compute stream: by cudaMemcpyAsync, which shares the host-to-device copy engine with the
//   weights and so waits behind copies already queued (the trace shows compute starting only after them), or with
//   SchedulerOptions::activation_upload KERNEL by a kernel reading the pinned buffer, which does not.
// - Decode steps (one token, one sequence) replay each run of consecutive RESIDENT layers as one CUDA graph, captured
//   per bucket of 256 positions (decode_graphs.hpp): one launch instead of ~15 per layer, bit for bit the same
//   outputs. Streamed, phased and CPU layers between the runs keep their events and waits, so a graph never runs
//   ahead of a copy. A traced step goes kernel by kernel (one span per layer).
// - At the end of a step (after the output is back), the first S copies of the next step are issued, so streaming
//   continues across steps (SchedulerOptions::prefetch_across_steps).
// - PHASED layers stream like STREAMED ones in steps of more than phased_cpu_max_tokens tokens and run like CPU
//   layers in smaller ones, so the streamed sequence depends on the step: the prompt order (STREAMED and PHASED
//   layers) and the decode order (STREAMED only), each numbered from 0 for its slots. The copies issued ahead at the
//   end of a step are for the likely next step: decode after decode and after a prompt's last (short) chunk, prompt
//   after a full-size chunk. When the guess is wrong, the copies of the two orders' common prefix (same layers, same
//   slots) still serve; the others were wasted (link time only: the copy stream runs in order, so the step's own
//   copies land after them, and compute waits for those). In decode the copy stream streams the STREAMED layers while
//   the host runs the PHASED ones on the CPU (from their copy in the pinned pool): the link and the CPU read host
//   memory at once. A PHASED layer's KV cache stays in pinned host memory (the CPU runner's); a GPU step uploads the
//   rows it reads into one device KV buffer, runs, frees its slot, and downloads the rows it wrote, all on the compute
//   stream, so the next PHASED layer finds the buffer free. The small uploads after a CPU layer (its activations, and
//   a prompt chunk's earlier KV rows) queue behind the weight copies already issued: with prefetch depth 1 that is the
//   next streamed layer's copy, which compute waits for anyway; deeper prefetch makes them wait for more unless
//   activations go up by kernel (SchedulerOptions::activation_upload).
//
// Timeline, S = 3 (prefetch depth 2), five streamed layers L0..L4 (copy shorter than compute: overlap is total):
//
//   copy     |L0|L1|L2|     |L3|        |L4|
//   compute     |==L0===|==L1===|==L2===|==L3===|==L4===|
//                ^ waits copy_end[0]     ^ L3's copy waited slot_free[0] (L0 done), L4's slot_free[1]
//
// and with a CPU layer C between L1 and L2 (the host waits once, for C's input; copies run on):
//
//   copy     |L0|L1|L2|                 |L3|
//   compute     |==L0===|==L1===|d2h|      .   |h2d|==L2===|==L3===|
//   host                            wait|===C (oneTBB)===|
//
// and a decode step with PHASED layers P alternating with STREAMED layers S, prefetch depth 1 (the CPU computes a
// phased layer while the link copies the next streamed one):
//
//   copy     |S1 |S3     |S5     |
//   compute  .  |S1|     |S3|     |S5|
//   host  |=P0=|   |=P2=|    |=P4=|
//
// Invariants: no device allocation after construction (everything is in the arena); a slot is overwritten only after
// compute recorded slot_free for its previous user; the compute stream never waits on the host; all timing comes from
// events on the stream that did the work, placed on the host clock through an anchor event recorded while the copy
// stream is idle.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "../engine.hpp"
#include "decode_graphs.hpp"
#include "ferry/error.hpp"
#include "ferry/kernels/cuda/check.cuh"
#include "ferry/kernels/cuda/cuda_ops.cuh"
#include "ferry/kernels/cuda/host_read.cuh"
#include "ferry/kernels/cuda/matmul.cuh"
#include "ferry/offload/cuda/device_arena.hpp"
#include "ferry/offload/cuda/paced_copy.hpp"
#include "ferry/offload/cuda/raii.hpp"
#include "ferry/offload/device_memory.hpp"
#include "ferry/offload/size_parse.hpp"

namespace ferry::detail {
namespace {

enum Phase : size_t { DECODE = 0, PROMPT = 1 };  // steps of at most / more than phased_cpu_max_tokens tokens

struct GpuLayer {
  Placement placement = Placement::CPU;
  int64_t copy = -1;                                     // STREAMED, PHASED: its entry in m_copies
  int64_t order_index[2] = {-1, -1};                     // k in each phase's streamed order (-1: not streamed then)
  bool ran_on_gpu = false;                               // in the last step (a PHASED layer may have run on the CPU)
  std::vector<QuantMatrixView> resident_views;           // RESIDENT: views into the arena
  std::vector<std::vector<QuantMatrixView>> slot_views;  // STREAMED, PHASED: views into each staging slot
  void* kv = nullptr;
  cuda::Event begin, end;  // compute span (timing events)
  // The layer whose `end` closes this layer's span in the last step: its own index, or the last layer of the graph it
  // was replayed in (kNoSpan for the other layers of that graph: their time is the first one's).
  size_t span_end = 0;
  bool replayed = false;  // in the last step, within a CUDA graph
};
constexpr size_t kNoSpan = SIZE_MAX;

struct StreamedCopy {
  size_t layer = 0;
  std::span<const std::byte> source;       // the layer's span in the pinned pool
  cuda::Event begin, end;                  // end doubles as "copy done" for compute to wait on
  std::unique_ptr<cuda::PacedCopy> paced;  // with SchedulerOptions::link_gbps: the copy, held to that rate
};

class GpuEngine final : public Engine {
 public:
  GpuEngine(const EngineSetup& setup, const MemoryPlan& plan, const GpuSizing& sizing);
  ~GpuEngine() override;

  void step(float* x, const StepContext& step, int64_t step_index, StepStats& stats) override;
  void report(MemoryReport& report) const override;
  const float* output() const override {
    // A PHASED last layer computes the output on the CPU in decode steps, on the GPU in prompt steps.
    return m_output != nullptr && m_layers.back().ran_on_gpu ? reinterpret_cast<const float*>(m_io_output.data())
                                                             : m_cpu.output();
  }
  void wait_idle() const override {
    FERRY_CUDA_CHECK(cudaStreamSynchronize(m_copy.get()));
    FERRY_CUDA_CHECK(cudaStreamSynchronize(m_compute.get()));
  }

 private:
  void run_step(float* x, const StepContext& step, int64_t step_index, StepStats& stats);
  // Issues the copies of m_order[m_issue_phase] up to its k-th entry (those not issued yet).
  void issue_copies_through(int64_t k);
  void run_streamed(size_t index, const StepContext& step, Phase phase);
  // A PHASED layer's GPU step: its host KV rows in, the layer, the rows it wrote out (compute stream).
  void run_phased_on_gpu(size_t index, const StepContext& step, const LayerRun& run);
  // The last layer of the run of replayable RESIDENT layers (in a step of n_tokens) that starts at `first`.
  size_t replayable_run_end(size_t first, int64_t n_tokens) const;
  // Layers [first, last] as one CUDA graph launch (DecodeGraphs::run); false when the direct path must run them.
  bool run_replayed(size_t first, size_t last, const StepContext& step);
  void record_anchor();
  void harvest(int64_t step_index, StepStats& stats);
  // Host-to-device on the compute stream from the start of a pinned io block: by kernel when `view` (the block's
  // device address) is set, else by the copy engine.
  void upload(void* dst, const HostBlock& block, const void* view, size_t bytes);
  LayerRun run_of(size_t layer);
  size_t slots() const { return m_slots.size(); }

  const EngineSetup& m_setup;
  MemoryPlan m_plan;
  GpuSizing m_sizing;
  cuda::Stream m_compute, m_copy;
  cuda::DeviceArena m_arena;  // before the cuBLAS handle: the handle's workspace lives in the arena
  cuda::CublasHandle m_cublas;
  PinnedHostPool m_pool;
  HostBlock m_io;         // pinned [max_tokens, width] floats: step input/output and CPU layers' activations
  HostBlock m_io_output;  // pinned copy of the last layer's output, when it runs on the GPU
  HostBlock m_io_inputs;  // pinned staging of StepContext::inputs
  // Device addresses of m_io and m_io_inputs when activations go up by kernel (ActivationUpload::KERNEL), else null.
  const void* m_io_view = nullptr;
  const void* m_io_inputs_view = nullptr;
  CpuRunner m_cpu;

  std::vector<GpuLayer> m_layers;
  std::vector<StreamedCopy> m_copies;  // per STREAMED or PHASED layer (its span in the pool), in stack order
  std::vector<int64_t> m_order[2];     // per phase: the entries of m_copies streamed in such a step, in order
  std::vector<void*> m_slots;
  std::vector<cuda::Event> m_slot_free;
  cuda::Event m_cpu_input_ready;
  cuda::Event m_anchor, m_step_begin, m_step_end;
  double m_anchor_host_us = 0;
  bool m_anchor_valid = false;
  int64_t m_copies_issued = 0;  // entries of m_order[m_issue_phase] issued for the current (or next) step
  Phase m_issue_phase = DECODE;
  int64_t m_common_prefix = 0;  // leading entries the two orders share (the same layers in the same slots)
  void* m_phased_kv = nullptr;  // the device KV buffer PHASED layers borrow in GPU steps
  std::vector<KvRange> m_kv_reads, m_kv_writes;  // reused per PHASED GPU step (capacity kept)
  bool m_reported_pageable_rate = false;

  float* m_x = nullptr;
  float* m_workspace = nullptr;
  float* m_output = nullptr;           // device output of the last layer (null when it runs on the CPU or has none)
  float* m_inputs = nullptr;           // device copy of the step's inputs (null when the stack takes none)
  bool m_has_inputs = false;           // this step carries inputs
  void* m_cublas_workspace = nullptr;  // shared by cuBLAS (set on the handle) and cuBLASLt (via GemmScratch)
  void* m_weight_scratch = nullptr;
  void* m_activation_scratch = nullptr;
  std::unique_ptr<CudaOps> m_ops;          // every GPU layer's ops: the compute stream, the handle, the scratch above
  int32_t* m_position = nullptr;           // the step's position, read on the device by replayed steps
  std::unique_ptr<DecodeGraphs> m_graphs;  // null when decode graphs are off
};

GpuEngine::GpuEngine(const EngineSetup& setup, const MemoryPlan& plan, const GpuSizing& sizing)
    : m_setup(setup), m_plan(plan), m_sizing(sizing), m_cpu(setup) {
  const SchedulerOptions& opt = setup.options;
  // First: a bad FERRY_ACTIVATION_UPLOAD is refused before seconds of filling the pinned pool.
  const bool upload_by_kernel =
      resolve_activation_upload(opt.activation_upload) == SchedulerOptions::ActivationUpload::KERNEL;
  m_compute = cuda::Stream::create();
  m_copy = cuda::Stream::create();
  m_arena = cuda::DeviceArena(plan);
  m_cublas = cuda::CublasHandle::create();

  m_cublas_workspace =
      m_arena.allocate(MemoryCategory::CUBLAS_WORKSPACE, opt.cublas_workspace_bytes, "cuBLAS workspace");
  FERRY_CUBLAS_CHECK(cublasSetStream(m_cublas.get(), m_compute.get()));
  FERRY_CUBLAS_CHECK(cublasSetWorkspace(m_cublas.get(), m_cublas_workspace, opt.cublas_workspace_bytes));

  m_x = m_arena.allocate_array<float>(MemoryCategory::ACTIVATIONS, sizing.residual_floats, "residual stream");
  m_workspace = m_arena.allocate_array<float>(MemoryCategory::ACTIVATIONS, sizing.workspace_floats, "layer workspace");
  if (sizing.output_floats > 0)
    m_output = m_arena.allocate_array<float>(MemoryCategory::ACTIVATIONS, sizing.output_floats, "output");
  if (sizing.step_input_floats > 0)
    m_inputs = m_arena.allocate_array<float>(MemoryCategory::ACTIVATIONS, sizing.step_input_floats, "step inputs");
  m_weight_scratch = m_arena.allocate(MemoryCategory::FP16_SCRATCH, sizing.weight_tile_elems * 2, "fp16 weight tile");
  m_activation_scratch =
      m_arena.allocate(MemoryCategory::FP16_SCRATCH, sizing.activation_fp16_elems * 2, "fp16 activations");
  cuda::GemmScratch scratch;
  scratch.weight = static_cast<__half*>(m_weight_scratch);
  scratch.weight_elems = sizing.weight_tile_elems;
  scratch.activations = static_cast<__half*>(m_activation_scratch);
  scratch.activation_elems = sizing.activation_fp16_elems;
  scratch.workspace = m_cublas_workspace;
  scratch.workspace_bytes = opt.cublas_workspace_bytes;
  if (sizing.fp32_tile_floats > 0)
    scratch.fp32_tile = m_arena.allocate_array<float>(MemoryCategory::FP16_SCRATCH, sizing.fp32_tile_floats,
                                                      "fp32 tile (dequantization via FP32, benchmark)");
  m_ops = std::make_unique<CudaOps>(m_compute.get(), m_cublas.get(), scratch);
  m_ops->set_fused_ops(resolve_fused_ops(opt.fused_ops));
  m_position =
      static_cast<int32_t*>(m_arena.allocate(MemoryCategory::ACTIVATIONS, sizing.position_bytes, "step position"));
  if (resolve_decode_graphs(opt.decode_graphs))
    m_graphs = std::make_unique<DecodeGraphs>(*m_ops, m_compute.get(), m_position, setup.layers.size(), setup.warn);

  // Streamed and phased layers: the pinned pool (filled now, from the layers' host bytes) and S slots of the largest
  // one; phased layers' GPU steps borrow one KV buffer of the largest phased cache.
  std::vector<std::span<const WeightTensor>> streamed;
  uint64_t largest = 0, largest_phased_kv = 0;
  for (size_t i = 0; i < setup.layers.size(); ++i) {
    const Placement p = setup.placements[i];
    if (p == Placement::STREAMED || p == Placement::PHASED) {
      streamed.push_back(setup.layers[i]->weights());
      largest = std::max(largest, layer_layout(setup.layers[i]->weights()).bytes);
    }
    if (p == Placement::PHASED) largest_phased_kv = std::max(largest_phased_kv, setup.layers[i]->kv_cache_bytes());
  }
  if (largest_phased_kv > 0)
    m_phased_kv = m_arena.allocate(MemoryCategory::KV_CACHE, largest_phased_kv, "KV buffer of the phased layers");
  m_pool = PinnedHostPool(streamed, HostPoolOptions{opt.simulate_pin_failure, setup.warn});
  if (!streamed.empty())
    for (int s = 0; s <= opt.prefetch_depth; ++s) {
      m_slots.push_back(m_arena.allocate(MemoryCategory::STAGING, largest, "staging slot " + std::to_string(s)));
      m_slot_free.push_back(cuda::Event::create(false));
    }

  std::string ignored;
  m_io = HostBlock::allocate(sizing.residual_floats * sizeof(float), true, false, &ignored);
  if (m_output != nullptr)
    m_io_output = HostBlock::allocate(sizing.output_floats * sizeof(float), true, false, &ignored);
  if (m_inputs != nullptr)
    m_io_inputs = HostBlock::allocate(sizing.step_input_floats * sizeof(float), true, false, &ignored);
  if (upload_by_kernel) {
    if (m_io.pinned()) m_io_view = cuda::device_view_of_host(m_io.data());
    if (m_io_inputs.pinned()) m_io_inputs_view = cuda::device_view_of_host(m_io_inputs.data());
    if (m_io_view == nullptr || (m_io_inputs.size() > 0 && m_io_inputs_view == nullptr))
      m_setup.warn(
          "activations go up by the copy engine, not by kernel as asked (FERRY_ACTIVATION_UPLOAD / "
          "activation_upload): the device cannot read the host buffers directly (not pinned, or no unified "
          "addressing)");
  }

  for (size_t i = 0; i < setup.layers.size(); ++i) {
    const Layer& layer = *setup.layers[i];
    GpuLayer g;
    g.placement = setup.placements[i];
    if (g.placement != Placement::CPU) {
      g.begin = cuda::Event::create(true);
      g.end = cuda::Event::create(true);
    }
    if (g.placement == Placement::RESIDENT || g.placement == Placement::STREAMED) {
      const uint64_t kv_bytes = layer.kv_cache_bytes();
      g.kv = m_arena.allocate(MemoryCategory::KV_CACHE, kv_bytes, layer.name() + " KV cache");
      if (kv_bytes > 0) FERRY_CUDA_CHECK(cudaMemset(g.kv, 0, kv_bytes));
    } else if (g.placement == Placement::PHASED) {
      g.kv = m_phased_kv;
    }
    const LayerLayout layout = layer_layout(layer.weights());
    if (g.placement == Placement::RESIDENT) {
      void* block = m_arena.allocate(MemoryCategory::RESIDENT_WEIGHTS, layout.bytes, layer.name() + " weights");
      g.resident_views = views_in_block(layer.weights(), layout, block);
      for (size_t t = 0; t < layer.weights().size(); ++t) {
        const QuantMatrixView& host = layer.weights()[t].view;
        FERRY_CUDA_CHECK(cudaMemcpy(const_cast<void*>(g.resident_views[t].data), host.data, tensor_bytes(host),
                                    cudaMemcpyHostToDevice));
      }
    } else if (g.placement == Placement::STREAMED || g.placement == Placement::PHASED) {
      g.copy = static_cast<int64_t>(m_copies.size());
      for (Phase phase : {DECODE, PROMPT})
        if (g.placement == Placement::STREAMED || phase == PROMPT) {
          g.order_index[phase] = static_cast<int64_t>(m_order[phase].size());
          m_order[phase].push_back(g.copy);
        }
      for (void* slot : m_slots) g.slot_views.push_back(views_in_block(layer.weights(), layout, slot));
      StreamedCopy c;
      c.layer = i;
      c.source = m_pool.span(m_copies.size());
      c.begin = cuda::Event::create(true);
      c.end = cuda::Event::create(true);
      if (opt.link_gbps > 0) c.paced = std::make_unique<cuda::PacedCopy>(c.source.size(), opt.link_gbps);
      m_copies.push_back(std::move(c));
    }
    m_layers.push_back(std::move(g));
  }
  // Phased layers' decode steps read their weights from the pinned pool, so the model file's pages stay cold.
  for (size_t i = 0; i < m_layers.size(); ++i)
    if (m_layers[i].placement == Placement::PHASED) {
      const auto copy = static_cast<size_t>(m_layers[i].copy);
      m_cpu.use_views(i, views_in_block(setup.layers[i]->weights(), m_pool.layout(copy), m_pool.span(copy).data()));
    }
  while (m_common_prefix < static_cast<int64_t>(std::min(m_order[DECODE].size(), m_order[PROMPT].size())) &&
         m_order[DECODE][static_cast<size_t>(m_common_prefix)] == m_order[PROMPT][static_cast<size_t>(m_common_prefix)])
    ++m_common_prefix;
  m_cpu_input_ready = cuda::Event::create(false);
  m_anchor = cuda::Event::create(true);
  m_step_begin = cuda::Event::create(true);
  m_step_end = cuda::Event::create(true);
  FERRY_CUDA_CHECK(cudaDeviceSynchronize());
}

GpuEngine::~GpuEngine() {
  // Nothing may still read the slots, the pool or the io buffer when they are freed.
  if (m_compute) cudaStreamSynchronize(m_compute.get());
  if (m_copy) cudaStreamSynchronize(m_copy.get());
}

LayerRun GpuEngine::run_of(size_t layer) {
  LayerRun run;
  run.ops = m_ops.get();
  run.workspace = m_workspace;
  run.workspace_floats = m_sizing.workspace_floats;
  run.kv_cache = m_layers[layer].kv;
  if (layer + 1 == m_layers.size()) run.output = m_output;
  if (m_has_inputs) run.inputs = m_inputs;
  return run;
}

void GpuEngine::issue_copies_through(int64_t last) {
  const std::vector<int64_t>& order = m_order[m_issue_phase];
  last = std::min<int64_t>(last, static_cast<int64_t>(order.size()) - 1);
  for (; m_copies_issued <= last; ++m_copies_issued) {
    const int64_t k = m_copies_issued;
    StreamedCopy& c = m_copies[static_cast<size_t>(order[static_cast<size_t>(k)])];
    const size_t slot = static_cast<size_t>(k) % slots();
    cudaStream_t copy = m_copy.get();
    FERRY_CUDA_CHECK(cudaStreamWaitEvent(copy, m_slot_free[slot].get(), 0));
    FERRY_CUDA_CHECK(cudaEventRecord(c.begin.get(), copy));
    if (c.paced)
      c.paced->enqueue(m_slots[slot], c.source.data(), copy);
    else
      FERRY_CUDA_CHECK(cudaMemcpyAsync(m_slots[slot], c.source.data(), c.source.size(), cudaMemcpyHostToDevice, copy));
    FERRY_CUDA_CHECK(cudaEventRecord(c.end.get(), copy));
  }
}

void GpuEngine::run_streamed(size_t index, const StepContext& step, Phase phase) {
  GpuLayer& g = m_layers[index];
  const Layer& layer = *m_setup.layers[index];
  cudaStream_t compute = m_compute.get();
  const int64_t k = g.order_index[phase];
  const size_t slot = static_cast<size_t>(k) % slots();
  issue_copies_through(k + static_cast<int64_t>(slots()) - 1);
  FERRY_CUDA_CHECK(cudaStreamWaitEvent(compute, m_copies[static_cast<size_t>(g.copy)].end.get(), 0));
  FERRY_CUDA_CHECK(cudaEventRecord(g.begin.get(), compute));
  if (g.placement == Placement::PHASED) {
    run_phased_on_gpu(index, step, run_of(index));  // records end and slot_free itself, before its KV rows go out
    return;
  }
  layer.forward(g.slot_views[slot], m_x, step, run_of(index));
  FERRY_CUDA_CHECK(cudaEventRecord(g.end.get(), compute));
  FERRY_CUDA_CHECK(cudaEventRecord(m_slot_free[slot].get(), compute));
}

void GpuEngine::run_phased_on_gpu(size_t index, const StepContext& step, const LayerRun& run) {
  const Layer& layer = *m_setup.layers[index];
  GpuLayer& g = m_layers[index];
  const HostBlock& host_kv = m_cpu.kv_cache(index);
  m_kv_reads.clear();
  m_kv_writes.clear();
  layer.kv_cache_traffic(step, m_kv_reads, m_kv_writes);
  auto check = [&](const KvRange& r) {
    if (r.offset > host_kv.size() || r.bytes > host_kv.size() - r.offset)
      fail(ErrorCategory::INTERNAL, "layer '" + layer.name() + "': KV rows at byte " + std::to_string(r.offset) +
                                        " (+" + std::to_string(r.bytes) + ") lie outside its " +
                                        std::to_string(host_kv.size()) + "-byte cache");
  };
  for (const KvRange& r : m_kv_reads) check(r);
  for (const KvRange& r : m_kv_writes) check(r);
  cudaStream_t compute = m_compute.get();
  auto* device_kv = static_cast<std::byte*>(run.kv_cache);  // m_phased_kv, as run_of() gives it
  for (const KvRange& r : m_kv_reads)
    FERRY_CUDA_CHECK(
        cudaMemcpyAsync(device_kv + r.offset, host_kv.data() + r.offset, r.bytes, cudaMemcpyHostToDevice, compute));
  const size_t slot = static_cast<size_t>(g.order_index[PROMPT]) % slots();
  layer.forward(g.slot_views[slot], m_x, step, run);
  // The slot is free once the layer has run: the next copy into it need not wait for the rows going out.
  FERRY_CUDA_CHECK(cudaEventRecord(g.end.get(), compute));
  FERRY_CUDA_CHECK(cudaEventRecord(m_slot_free[slot].get(), compute));
  for (const KvRange& r : m_kv_writes)
    FERRY_CUDA_CHECK(
        cudaMemcpyAsync(host_kv.data() + r.offset, device_kv + r.offset, r.bytes, cudaMemcpyDeviceToHost, compute));
}

size_t GpuEngine::replayable_run_end(size_t first, int64_t n_tokens) const {
  size_t last = first;
  while (last + 1 < m_layers.size() &&
         placement_for_step(m_layers[last + 1].placement, n_tokens, m_setup.options.phased_cpu_max_tokens) ==
             Placement::RESIDENT &&
         m_setup.layers[last + 1]->replayable())
    ++last;
  return last;
}

bool GpuEngine::run_replayed(size_t first, size_t last, const StepContext& step) {
  int64_t limit = std::numeric_limits<int64_t>::max();
  for (size_t l = first; l <= last; ++l) limit = std::min(limit, m_setup.layers[l]->position_limit());
  cudaStream_t compute = m_compute.get();
  FERRY_CUDA_CHECK(cudaEventRecord(m_layers[first].begin.get(), compute));
  auto enqueue = [&] {
    for (size_t l = first; l <= last; ++l) m_setup.layers[l]->forward(m_layers[l].resident_views, m_x, step, run_of(l));
  };
  const bool ran = m_graphs->run(first, last, step, limit, enqueue);
  if (!ran) return false;  // the direct path records the begin event again
  FERRY_CUDA_CHECK(cudaEventRecord(m_layers[last].end.get(), compute));
  for (size_t l = first; l <= last; ++l) {
    m_layers[l].ran_on_gpu = true;
    m_layers[l].replayed = true;
    m_layers[l].span_end = l == first ? last : kNoSpan;
  }
  return true;
}

void GpuEngine::upload(void* dst, const HostBlock& block, const void* view, size_t bytes) {
  if (view != nullptr)
    cuda::read_host_to_device(dst, view, bytes, m_compute.get());
  else
    FERRY_CUDA_CHECK(cudaMemcpyAsync(dst, block.data(), bytes, cudaMemcpyHostToDevice, m_compute.get()));
}

void GpuEngine::record_anchor() {
  // Recorded while the copy stream is idle, so the event's device time is the host time taken just before.
  m_anchor_host_us = micros_since(m_setup.epoch, Clock::now());
  FERRY_CUDA_CHECK(cudaEventRecord(m_anchor.get(), m_copy.get()));
  m_anchor_valid = true;
}

void GpuEngine::step(float* x, const StepContext& step, int64_t step_index, StepStats& stats) {
  try {
    run_step(x, step, step_index, stats);
  } catch (...) {
    // A layer or CUDA call failed mid-step: let the work already enqueued finish (it may read the slots, the pool and
    // io), and forget the copies issued so far, so a later step starts its streaming from the first layer again
    // instead of computing on whatever a slot holds.
    cudaStreamSynchronize(m_compute.get());
    cudaStreamSynchronize(m_copy.get());
    m_copies_issued = 0;
    m_anchor_valid = false;
    throw;
  }
}

void GpuEngine::run_step(float* x, const StepContext& step, int64_t step_index, StepStats& stats) {
  const int64_t n_tokens = step.n_tokens;
  cudaStream_t compute = m_compute.get();
  const size_t x_bytes = static_cast<size_t>(n_tokens * m_setup.width) * sizeof(float);
  auto* io = reinterpret_cast<float*>(m_io.data());
  if (!m_anchor_valid) record_anchor();

  std::memcpy(io, x, x_bytes);  // host work, before the step's first event: gpu_ms covers device work only
  FERRY_CUDA_CHECK(cudaEventRecord(m_step_begin.get(), compute));
  upload(m_x, m_io, m_io_view, x_bytes);
  m_has_inputs = !step.inputs.empty();
  if (m_has_inputs) {  // the pinned staging is reused next step only after this step's end event (synchronised below)
    std::memcpy(m_io_inputs.data(), step.inputs.data(), step.inputs.size_bytes());
    upload(m_inputs, m_io_inputs, m_io_inputs_view, step.inputs.size_bytes());
  }

  const Phase phase = n_tokens > m_setup.options.phased_cpu_max_tokens ? PROMPT : DECODE;
  if (phase != m_issue_phase) {  // copies issued ahead for a step of the other kind (see the note on top): those
    m_issue_phase = phase;       // of the orders' common prefix are this step's too; the others were wasted
    m_copies_issued = std::min(m_copies_issued, m_common_prefix);
  }
  // Decode steps replay their runs of resident layers as CUDA graphs; a traced step goes kernel by kernel, so that
  // the trace keeps one span per layer.
  bool replay = m_graphs != nullptr && m_setup.trace == nullptr && m_graphs->applies(step);
  if (replay) m_graphs->begin_step();
  for (size_t i = 0; i < m_layers.size(); ++i) {
    m_layers[i].span_end = i;
    m_layers[i].replayed = false;
  }
  for (size_t i = 0; i < m_layers.size(); ++i) {
    GpuLayer& g = m_layers[i];
    const Layer& layer = *m_setup.layers[i];
    const Placement here = placement_for_step(g.placement, n_tokens, m_setup.options.phased_cpu_max_tokens);
    g.ran_on_gpu = here != Placement::CPU;
    switch (here) {
      case Placement::STREAMED:
        run_streamed(i, step, phase);
        break;
      case Placement::RESIDENT:
        if (replay && layer.replayable()) {
          const size_t last = replayable_run_end(i, n_tokens);
          if (run_replayed(i, last, step)) {
            i = last;
            break;
          }
          replay = false;  // the rest of the step goes kernel by kernel (a layer refusing the step raises it there)
        }
        FERRY_CUDA_CHECK(cudaEventRecord(g.begin.get(), compute));
        layer.forward(g.resident_views, m_x, step, run_of(i));
        FERRY_CUDA_CHECK(cudaEventRecord(g.end.get(), compute));
        break;
      case Placement::PHASED:  // resolved above; never here
        fail(ErrorCategory::INTERNAL, "layer '" + layer.name() + "': a phased placement was not resolved");
      case Placement::CPU: {
        FERRY_CUDA_CHECK(cudaMemcpyAsync(io, m_x, x_bytes, cudaMemcpyDeviceToHost, compute));
        FERRY_CUDA_CHECK(cudaEventRecord(m_cpu_input_ready.get(), compute));
        const Clock::time_point wait_begin = Clock::now();
        FERRY_CUDA_CHECK(cudaEventSynchronize(m_cpu_input_ready.get()));
        const Clock::time_point wait_end = Clock::now();
        const double wait_ms = std::chrono::duration<double, std::milli>(wait_end - wait_begin).count();
        stats.host_wait_ms += wait_ms;
        if (m_setup.trace != nullptr)
          m_setup.trace->add({"wait for " + layer.name() + " input", TraceTrack::HOST,
                              micros_since(m_setup.epoch, wait_begin), wait_ms * 1e3, step_index,
                              static_cast<int64_t>(i), 0});
        m_cpu.run(i, io, step, step_index, stats);
        upload(m_x, m_io, m_io_view, x_bytes);
        break;
      }
    }
  }
  FERRY_CUDA_CHECK(cudaMemcpyAsync(io, m_x, x_bytes, cudaMemcpyDeviceToHost, compute));
  if (m_output != nullptr && m_layers.back().ran_on_gpu)
    FERRY_CUDA_CHECK(cudaMemcpyAsync(m_io_output.data(), m_output,
                                     m_setup.layers.back()->output_floats(n_tokens) * sizeof(float),
                                     cudaMemcpyDeviceToHost, compute));
  FERRY_CUDA_CHECK(cudaEventRecord(m_step_end.get(), compute));
  FERRY_CUDA_CHECK(cudaEventSynchronize(m_step_end.get()));
  std::memcpy(x, io, x_bytes);

  harvest(step_index, stats);
  m_copies_issued = 0;
  m_anchor_valid = false;
  // The likely next step: after a prompt step shorter than the largest (a prompt's last chunk), a decode step; else
  // one of the same kind (decode after decode, the next full chunk of a long prompt or of perplexity).
  if (phase == PROMPT && n_tokens < m_setup.options.max_tokens) m_issue_phase = DECODE;
  if (m_setup.options.prefetch_across_steps && !m_order[m_issue_phase].empty()) {
    record_anchor();
    issue_copies_through(static_cast<int64_t>(slots()) - 1);
  }
  if (!m_pool.pinned() && stats.copy_bytes > 0 && !m_reported_pageable_rate) {
    m_reported_pageable_rate = true;
    m_setup.warn("streaming from pageable host memory ran at " + std::to_string(stats.copy_gbps()) +
                 " GB/s in the first step that streamed (" + std::to_string(m_order[phase].size()) + " layers, " +
                 format_size(stats.copy_bytes) + ")");
  }
}

void GpuEngine::harvest(int64_t step_index, StepStats& stats) {
  stats.gpu_ms = cuda::elapsed_ms(m_step_begin, m_step_end);
  TraceRecorder* trace = m_setup.trace;
  auto at_us = [&](const cuda::Event& e) { return m_anchor_host_us + 1e3 * cuda::elapsed_ms(m_anchor, e); };
  for (size_t i = 0; i < m_layers.size(); ++i) {
    const GpuLayer& g = m_layers[i];
    if (g.replayed) ++stats.replayed_layers;
    if (!g.ran_on_gpu || g.span_end == kNoSpan) continue;
    const double ms = cuda::elapsed_ms(g.begin, m_layers[g.span_end].end);
    stats.gpu_compute_ms += ms;
    if (trace != nullptr)
      trace->add({m_setup.layers[i]->name(), TraceTrack::COMPUTE, at_us(g.begin), ms * 1e3, step_index,
                  static_cast<int64_t>(i), 0});
  }
  for (int64_t entry : m_order[m_issue_phase]) {  // this step's copies (m_issue_phase is the step's phase here)
    const StreamedCopy& c = m_copies[static_cast<size_t>(entry)];
    const double ms = cuda::elapsed_ms(c.begin, c.end);
    stats.copy_ms += ms;
    stats.copy_bytes += c.source.size();
    if (trace != nullptr)
      trace->add({"copy " + m_setup.layers[c.layer]->name(), TraceTrack::COPY, at_us(c.begin), ms * 1e3, step_index,
                  static_cast<int64_t>(c.layer), c.source.size()});
  }
}

void GpuEngine::report(MemoryReport& r) const {
  r.plan = m_plan;
  r.uses_device = true;
  r.arena_bytes = m_arena.size();
  r.arena_high_water = m_arena.high_water();
  for (size_t i = 0; i < kMemoryCategoryCount; ++i)
    r.arena_used[i] = m_arena.allocator().used(static_cast<MemoryCategory>(i));
  r.host_pool_bytes = m_pool.bytes();
  r.host_pool_pinned = m_pool.pinned();
  r.host_bytes = m_pool.bytes() + m_io.size() + m_io_output.size() + m_io_inputs.size() + m_cpu.host_bytes();
  r.host_high_water = r.host_bytes;  // all host memory is taken at construction
}

}  // namespace

std::unique_ptr<Engine> make_gpu_engine(const EngineSetup& setup, const MemoryPlanInput& input,
                                        const GpuSizing& sizing) {
  const MemoryPlan plan = plan_memory(input, setup.options.vram_budget);  // BUDGET here, before any allocation
  return std::make_unique<GpuEngine>(setup, plan, sizing);
}

}  // namespace ferry::detail
