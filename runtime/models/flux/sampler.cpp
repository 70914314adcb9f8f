#include "ferry/models/flux/sampler.hpp"

#include <chrono>
#include <cmath>
#include <fstream>
#include <system_error>

#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"

namespace ferry {

double flux_schedule_mu(int64_t image_tokens) {
  constexpr double x1 = 256, y1 = 0.5, x2 = 4096, y2 = 1.15;
  const double m = (y2 - y1) / (x2 - x1);
  return m * static_cast<double>(image_tokens) + (y1 - m * x1);
}

std::vector<float> flux_timesteps(int steps, int64_t image_tokens, bool shift) {
  if (steps < 1) fail(ErrorCategory::INVALID_ARGUMENT, "flux schedule: " + std::to_string(steps) + " steps");
  const double mu = flux_schedule_mu(image_tokens);
  std::vector<float> t(static_cast<size_t>(steps) + 1);
  for (int i = 0; i <= steps; ++i) {
    const double linear = 1.0 - static_cast<double>(i) / steps;
    // time_shift(mu, 1, t); at t = 0 the reference's 1/t is infinite and the shifted value 0.
    const double shifted = linear <= 0.0 ? 0.0 : std::exp(mu) / (std::exp(mu) + (1.0 / linear - 1.0));
    t[static_cast<size_t>(i)] = static_cast<float>(shift ? shifted : linear);
  }
  return t;
}

void flux_sample(FluxRunner& runner, std::span<float> latents, int64_t n_img, std::span<const float> ids,
                 std::span<const float> y, std::span<const float> timesteps, float guidance,
                 const FluxStepCallback& on_step) {
  std::vector<float> velocity(latents.size());
  for (size_t i = 0; i + 1 < timesteps.size(); ++i) {
    const float t = timesteps[i], t_next = timesteps[i + 1];
    const auto begin = std::chrono::steady_clock::now();
    runner.forward(latents, n_img, ids, t, guidance, y, velocity);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    for (size_t k = 0; k < latents.size(); ++k) latents[k] += (t_next - t) * velocity[k];
    if (on_step) on_step(static_cast<int>(i), t, t_next, seconds);
  }
}

std::vector<float> read_f32_file(const std::filesystem::path& path, size_t row_floats, size_t rows) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) fail(ErrorCategory::IO, path.string() + ": cannot read: " + ec.message());
  const uint64_t row_bytes = row_floats * sizeof(float);
  if (rows > 0 && size != rows * row_bytes)
    fail(ErrorCategory::FORMAT, path.string() + ": " + std::to_string(size) + " bytes, expected " +
                                    std::to_string(rows * row_bytes) + " (" + std::to_string(rows) + " x " +
                                    std::to_string(row_floats) + " float32)");
  if (rows == 0 && (size == 0 || size % row_bytes != 0))
    fail(ErrorCategory::FORMAT, path.string() + ": " + std::to_string(size) +
                                    " bytes, expected a positive multiple of " + std::to_string(row_bytes) +
                                    " (rows of " + std::to_string(row_floats) + " float32)");
  std::vector<float> values(static_cast<size_t>(size / sizeof(float)));
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(size)))
    fail(ErrorCategory::IO, path.string() + ": cannot read " + std::to_string(size) + " bytes");
  return values;
}

void write_f32_file(const std::filesystem::path& path, std::span<const float> values) {
  AtomicFile file(path);
  file.write(std::as_bytes(values));
  file.commit();
}

}  // namespace ferry
