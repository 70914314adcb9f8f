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
// - on the CPU: the same two bounds with the CPU's rates (steps of kGemvMaxTokens + 1 .. kCpuInt8MaxTokens at its
//   int8 path's rate where the profile has one).
// The step is then played out in order as the scheduler runs it: one GPU stream and one copy engine; a streamed
// layer's copy starts when the copy engine is free and one of the S = prefetch_depth + 1 staging slots is (a slot
// is freed when the layer that used it has run), and the layer runs when both its copy and the previous layer are
// done; CPU layers run in sequence with the GPU's layers (the activations move between them). What is left out, and
// why it is small for the cases the planner decides: attention (linear in the context, a few % of a decode step at
// short contexts), element-wise ops and the activations' transfers (kilobytes per token).
#pragma once

#include <cstdint>
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
  double copy_s = 0.0;     // streamed layers: its weights over the link
};

struct StepPrediction {
  double seconds = 0.0;           // the step, end to end
  std::vector<LayerTime> layers;  // per layer
  double gpu_busy_s = 0.0, copy_busy_s = 0.0, cpu_busy_s = 0.0;
};

// The time of one step of `n_tokens` tokens through `stack` placed as `placements` (one per layer). INVALID_ARGUMENT
// when the profile has no rates (DeviceProfile::has_rates) or a layer sits on a GPU the profile does not have.
StepPrediction predict_step(const StackProfile& stack, std::span<const Placement> placements,
                            const DeviceProfile& device, int64_t n_tokens, int prefetch_depth);

// What a user waits for: a prompt of `prompt_tokens` processed in steps of up to stack.max_tokens, then
// `generated_tokens` one at a time.
struct RunPrediction {
  double prompt_tokens_per_s = 0.0;
  double generate_tokens_per_s = 0.0;
  double total_s = 0.0;  // the prompt, then the generation
};
RunPrediction predict_run(const StackProfile& stack, std::span<const Placement> placements, const DeviceProfile& device,
                          int64_t prompt_tokens, int64_t generated_tokens, int prefetch_depth);

}  // namespace ferry
