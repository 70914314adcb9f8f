// Predicted time of a step from a stack's profile, a placement and a device's measured rates: what `ferry plan`
// prints and the `auto` planner minimises. Pure arithmetic, no CUDA.
//
// Per layer, from the matrices it multiplies (LayerDemand::matmuls each at its own share of the step's T, as
// LayerDemand::matmul_tokens gives it: all of T for llama, the image or the text tokens for a Flux double block's img
// and txt streams; vector_matmuls at T = 1):
// - on the GPU (resident or streamed): up to kGemvMaxTokens tokens, each matrix takes the longer of reading its bytes
//   at the GPU's GEMV rate for its type and doing 2 * elements * tokens flops at the GPU's GEMM rate; beyond, a
//   dequantization pass to FP16 (its bytes read, two per weight written, at the device's memory rate) and then the
//   flops, with the GEMM rate (measured at kGemmCalibrationTokens, pass included) rid of that pass;
// - a streamed layer's copy takes weight_bytes at the link's rate for copies of that size;
// - a phased layer is a streamed one in a step of more than phased_cpu_max_tokens tokens (a prompt), plus the
//   download of the K/V rows the step wrote into the device KV buffer it borrows (its cache lives in host memory; the
//   rows' size is kv_cache_bytes / StackProfile::kv_cache_rows, left out where the profile does not say), and a CPU
//   layer in smaller steps (decode);
// - on the CPU: the same two bounds with the CPU's rates (steps of kGemvMaxTokens + 1 .. kCpuInt8MaxTokens at its
//   int8 path's rate where the profile has one).
// The step is then played out in order as the scheduler runs it: one GPU stream and one copy engine; a streamed
// layer's copy starts when the copy engine is free and one of the S = prefetch_depth + 1 staging slots is (a slot
// is freed when the layer that used it has run), and the layer runs when both its copy and the previous layer are
// done; CPU layers run in sequence with the GPU's layers (the activations move between them), while the copy engine
// goes on filling free slots: a decode step that interleaves CPU (phased) and streamed layers costs about the larger
// of the CPU's time and the link's, not their sum:
//
//   CPU     [P0 ]      [P1 ]      [P2 ]
//   GPU          [S0]       [S1]       [S2]
//   copy    [S0 ][S1 ]      [S2 ]      ...      (S = 2 slots: S2's copy waits for S0's slot)
//
// A phased layer's GPU step also moves K/V rows: those it wrote back to host memory (in the play-out, on the compute
// stream), and those earlier steps wrote up to the device (predict_run: a prompt's chunk k reads the k chunks
// before it, added to the prompt's time). What is left out, and why it is small for the cases the planner decides:
// attention (linear in the context, a few % of a decode step at short contexts), element-wise ops and the
// activations' transfers (kilobytes per token).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ferry/offload/placement.hpp"
#include "ferry/policies/device_profile.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

// The token count at which `ferry calibrate` measures the GPU's GEMM rate (dequantization + cuBLASLt), and the most
// tokens the GPU's GEMV kernels take before a matmul goes the GEMM way (kernels' device_sizing::kGemvMaxTokens; the
// planner does not link the kernels, so the value is repeated here and checked equal by test_cost_model).
inline constexpr int64_t kGemmCalibrationTokens = 512;
inline constexpr int64_t kGemvMaxTokens = 8;
// The most tokens the CPU's matmul keeps on its int8 path (kernels' cpu::kCpuInt8MaxTokens, checked equal by
// test_cost_model): the CPU's steps up to it are priced at DeviceProfile::cpu_int8_flops when measured.
inline constexpr int64_t kCpuInt8MaxTokens = 64;

struct LayerTime {
  double compute_s = 0.0;  // on the device it runs on
  double copy_s = 0.0;     // streamed layers (and phased ones in a GPU step): its weights over the link
  double kv_copy_s = 0.0;  // phased layers in a GPU step: the step's K/V rows back to host memory
};

struct StepPrediction {
  double seconds = 0.0;           // the step, end to end
  std::vector<LayerTime> layers;  // per layer
  double gpu_busy_s = 0.0, copy_busy_s = 0.0, cpu_busy_s = 0.0;
};

// How the scheduler runs a placement: its prefetch depth (S = prefetch_depth + 1 staging slots) and the step size up
// to which PHASED layers run on the CPU (StackOptions::phased_cpu_max_tokens; a plan's Plan::phased_cpu_max_tokens).
struct ScheduleShape {
  int prefetch_depth = 1;
  int64_t phased_cpu_max_tokens = StackOptions{}.phased_cpu_max_tokens;
};

// The time of one step of `n_tokens` tokens through `stack` placed as `placements` (one per layer). INVALID_ARGUMENT
// when the profile has no rates (DeviceProfile::has_rates) or a layer sits on a GPU the profile does not have.
StepPrediction predict_step(const StackProfile& stack, std::span<const Placement> placements,
                            const DeviceProfile& device, int64_t n_tokens, const ScheduleShape& shape);

// Every layer's times at one step size, on every device it could run on: the costly part of a prediction (each matrix
// priced), which a planner comparing many placements computes once (RunCosts) and plays out per placement.
struct StepCosts {
  int64_t n_tokens = 0;
  std::vector<double> gpu_s, cpu_s, copy_s, kv_copy_s;  // per layer; gpu_s and kv_copy_s empty without a GPU
};
StepCosts step_costs(const StackProfile& stack, const DeviceProfile& device, int64_t n_tokens);
// The step played out for `placements` (predict_step = play_out(step_costs(...))).
StepPrediction play_out(const StackProfile& stack, const StepCosts& costs, std::span<const Placement> placements,
                        const ScheduleShape& shape);

// What a user waits for: a prompt of `prompt_tokens` processed in steps of up to stack.max_tokens, then
// `generated_tokens` one at a time.
struct RunPrediction {
  double prompt_tokens_per_s = 0.0;
  double generate_tokens_per_s = 0.0;
  double total_s = 0.0;  // the prompt, then the generation
};
RunPrediction predict_run(const StackProfile& stack, std::span<const Placement> placements, const DeviceProfile& device,
                          int64_t prompt_tokens, int64_t generated_tokens, const ScheduleShape& shape);

// A workload's step costs, computed once (the prompt's full and last steps and the decode step): predict_run for many
// placements of one stack, as the `auto` planner searches, at the price of the play-outs only. It keeps a pointer to
// `stack`, which must outlive it.
class RunCosts {
 public:
  RunCosts(const StackProfile& stack, const DeviceProfile& device, int64_t prompt_tokens, int64_t generated_tokens);
  RunPrediction predict(std::span<const Placement> placements, const ScheduleShape& shape) const;

 private:
  // Seconds the phased layers' GPU steps spend reading K/V rows back from host memory: over the prompt (its later
  // chunks), or over the generation (only when the threshold is 0, so decode steps run them on the GPU).
  double kv_read_s(std::span<const Placement> placements, const ScheduleShape& shape, bool generation) const;

  const StackProfile* m_stack;
  int64_t m_prompt_tokens, m_generated_tokens, m_full_steps;
  std::vector<double> m_kv_row_s;           // per layer: seconds per K/V row moved (empty without a GPU or KV rows)
  std::optional<StepCosts> m_full, m_last;  // steps of stack.max_tokens, and the prompt's shorter last one
  StepCosts m_token;
};

}  // namespace ferry
