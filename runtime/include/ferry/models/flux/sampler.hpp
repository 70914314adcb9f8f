// Flux.1's flow-matching Euler sampler (black-forest-labs/flux, sampling.py): timesteps linspace(1, 0, N + 1) moved by
// the resolution-dependent shift t' = e^mu / (e^mu + (1/t - 1)), mu linear in the image tokens from 0.5 at 256 to
// 1.15 at 4096 (get_schedule); then x += (t_next - t) * v(x, t) per step (denoise). Flux.1-schnell's models (no
// guidance_in) sample the unshifted schedule, as the reference does for them. And the raw float32 files that
// `ferry flux-step` reads and writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <vector>

#include "ferry/models/flux/runner.hpp"

namespace ferry {

// get_lin_function(256, 0.5, 4096, 1.15) at image_tokens (extrapolated outside).
double flux_schedule_mu(int64_t image_tokens);
// steps + 1 timesteps from 1 down to 0, shifted when `shift`.
std::vector<float> flux_timesteps(int steps, int64_t image_tokens, bool shift);

// Per step: its index, the timestep it evaluated, the next one, and the seconds the model call took.
using FluxStepCallback = std::function<void(int step, float t, float t_next, double seconds)>;
// latents [n_img, in_channels] updated in place over `timesteps` (the runner's prompt set with set_text first).
void flux_sample(FluxRunner& runner, std::span<float> latents, int64_t n_img, std::span<const float> ids,
                 std::span<const float> y, std::span<const float> timesteps, float guidance,
                 const FluxStepCallback& on_step = {});

// A raw float32 file (native byte order) whose size must be a whole number of rows of row_floats, and exactly
// `rows` rows when rows > 0. FORMAT naming the file, its size and the size expected; IO when it cannot be read.
std::vector<float> read_f32_file(const std::filesystem::path& path, size_t row_floats, size_t rows);
// Written atomically (AtomicFile): a reader never sees a partial file.
void write_f32_file(const std::filesystem::path& path, std::span<const float> values);

}  // namespace ferry
