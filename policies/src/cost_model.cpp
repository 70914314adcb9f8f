#include "ferry/policies/cost_model.hpp"

#include <algorithm>
#include <deque>
#include <string>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"

namespace ferry {
namespace {

// A type the profile did not measure takes the slowest measured rate: a prediction may be pessimistic, never
// flattering.
double rate_for(const std::map<std::string, double>& rates, GgmlType type) {
  const auto it = rates.find(std::string(type_name(type)));
  if (it != rates.end() && it->second > 0.0) return it->second;
  double slowest = 0.0;
  for (const auto& [name, r] : rates)
    if (r > 0.0 && (slowest == 0.0 || r < slowest)) slowest = r;
  return slowest;
}

// The rows matrix k of `layer` multiplies in a step of n_tokens: its own count at max_tokens (LayerDemand::
// matmul_tokens), scaled to the step and rounded up. Exact at max_tokens, the only step size a Flux call has; a
// matrix that takes every token (llama's) takes n_tokens at any step.
int64_t matrix_tokens(const LayerDemand& layer, size_t k, int64_t n_tokens, int64_t max_tokens) {
  if (layer.matmul_tokens.size() != layer.matmuls.size() || max_tokens < 1) return n_tokens;
  const int64_t at_max = layer.matmul_tokens[k];
  if (at_max >= max_tokens) return n_tokens;
  return std::min(n_tokens, (at_max * n_tokens + max_tokens - 1) / max_tokens);
}

// The device's memory rate as the profile knows it: its F16 GEMV (two bytes per weight, streamed once), else its
// fastest measured GEMV.
double memory_rate(const std::map<std::string, double>& gemv) {
  const auto it = gemv.find(std::string(type_name(GgmlType::F16)));
  if (it != gemv.end() && it->second > 0.0) return it->second;
  double fastest = 0.0;
  for (const auto& [name, r] : gemv) fastest = std::max(fastest, r);
  return fastest;
}

// Seconds of one matrix of `tokens` rows on a device with these rates. Up to kGemvMaxTokens the GEMV kernels read
// the weights once: the longer of that read and the flops. Beyond, the GPU's GEMM path first dequantizes the whole
// matrix to FP16 (reads its bytes, writes two per weight) and then multiplies: a cost per step, whatever its token
// count, which is why small steps prefill slower than their flops say. The GEMM rate was measured at
// kGemmCalibrationTokens tokens with that pass included, so the pass is taken out of it: at the calibration size
// the prediction is flops / rate, as measured; smaller steps pay the pass more often, larger ones less.
double matrix_seconds(const QuantMatrixView& m, int64_t tokens, const std::map<std::string, double>& gemv,
                      double gemm_flops, bool dequantizes) {
  const double elements = static_cast<double>(m.n_cols) * static_cast<double>(m.n_rows);
  const double bytes = static_cast<double>(row_bytes(m.type, m.n_cols)) * static_cast<double>(m.n_rows);
  const double flops = 2.0 * elements * static_cast<double>(tokens);
  if (!dequantizes || tokens <= kGemvMaxTokens) return std::max(bytes / rate_for(gemv, m.type), flops / gemm_flops);
  const double dequant_s = (bytes + 2.0 * elements) / memory_rate(gemv);
  const double calibration_flops = 2.0 * elements * static_cast<double>(kGemmCalibrationTokens);
  const double per_flop = std::max(0.0, 1.0 / gemm_flops - dequant_s / calibration_flops);
  return dequant_s + flops * per_flop;
}

double matmul_seconds(const LayerDemand& layer, int64_t n_tokens, int64_t max_tokens,
                      const std::map<std::string, double>& gemv, double gemm_flops, bool dequantizes) {
  double total = 0.0;
  auto add = [&](const QuantMatrixView& m, int64_t tokens) {
    total += matrix_seconds(m, tokens, gemv, gemm_flops, dequantizes);
  };
  for (size_t k = 0; k < layer.matmuls.size(); ++k)
    add(layer.matmuls[k], matrix_tokens(layer, k, n_tokens, max_tokens));
  for (const QuantMatrixView& m : layer.vector_matmuls) add(m, 1);  // one vector per step (Flux's modulation)
  return total;
}

// The step played out; `out` (when given) gets every layer's times and the busy totals. The planner calls it with
// none, for the seconds alone, tens of thousands of times per plan.
double play_out_into(const StackProfile& stack, const StepCosts& c, std::span<const Placement> placements,
                     const ScheduleShape& shape, StepPrediction* out) {
  if (placements.size() != stack.layers.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "cost model: " + std::to_string(placements.size()) + " placements for " +
                                              std::to_string(stack.layers.size()) + " layers");
  if (shape.prefetch_depth < 1)
    fail(ErrorCategory::INVALID_ARGUMENT, "cost model: a step needs at least one layer of prefetch");
  double done = 0.0;       // when the previous layer finished
  double copy_free = 0.0;  // when the copy engine is next free
  // Staging slots, soonest free first (a handful: the sort is of at most 5 values).
  std::deque<double> slot_free(static_cast<size_t>(shape.prefetch_depth) + 1, 0.0);
  for (size_t i = 0; i < placements.size(); ++i) {
    const Placement where = placement_for_step(placements[i], c.n_tokens, shape.phased_cpu_max_tokens);
    LayerTime t;
    if (where == Placement::CPU) {
      t.compute_s = c.cpu_s[i];
      done += t.compute_s;
      if (out) out->cpu_busy_s += t.compute_s;
    } else {
      if (c.gpu_s.empty())
        fail(ErrorCategory::INVALID_ARGUMENT,
             "cost model: layer '" + stack.layers[i].name + "' is placed on the GPU of a profile without one");
      t.compute_s = c.gpu_s[i];
      double start = done;
      if (where == Placement::STREAMED) {
        t.copy_s = c.copy_s[i];
        const double slot = slot_free.front();
        slot_free.pop_front();
        const double copy_done = std::max(copy_free, slot) + t.copy_s;
        copy_free = copy_done;
        start = std::max(start, copy_done);
        // A phased layer's step writes K/V rows into the borrowed device buffer: they go back to host memory before
        // the next phased layer may take the buffer, on the compute stream's order.
        if (placements[i] == Placement::PHASED) t.kv_copy_s = c.kv_copy_s[i];
        slot_free.push_back(start + t.compute_s);
        std::sort(slot_free.begin(), slot_free.end());
        if (out) out->copy_busy_s += t.copy_s;
      }
      done = start + t.compute_s + t.kv_copy_s;
      if (out) out->gpu_busy_s += t.compute_s;
    }
    if (out) out->layers.push_back(t);
  }
  if (out) out->seconds = done;
  return done;
}

}  // namespace

StepCosts step_costs(const StackProfile& stack, const DeviceProfile& device, int64_t n_tokens) {
  if (!device.has_rates())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cost model: the device profile '" + device.name + "' has no measured rates (run `ferry calibrate`)");
  if (n_tokens < 1) fail(ErrorCategory::INVALID_ARGUMENT, "cost model: a step needs at least one token");
  StepCosts c;
  c.n_tokens = n_tokens;
  const bool int8 = n_tokens > kGemvMaxTokens && n_tokens <= kCpuInt8MaxTokens && device.cpu_int8_flops > 0.0;
  for (const LayerDemand& l : stack.layers) {
    c.cpu_s.push_back(matmul_seconds(l, n_tokens, stack.max_tokens, device.cpu_gemv_bytes_per_s,
                                     int8 ? device.cpu_int8_flops : device.cpu_gemm_flops, false));
    if (!device.has_gpu) continue;
    c.gpu_s.push_back(
        matmul_seconds(l, n_tokens, stack.max_tokens, device.gpu_gemv_bytes_per_s, device.gpu_gemm_flops, true));
    c.copy_s.push_back(static_cast<double>(l.weight_bytes) / device.link_rate(l.weight_bytes));
    // The rows a step of n_tokens writes: n_tokens of the kv_cache_rows the layer's cache holds (device to host; the
    // profile's link rate is host to device, the same PCIe lanes the other way).
    double kv_s = 0.0;
    if (stack.kv_cache_rows > 0 && l.kv_cache_bytes > 0) {
      const uint64_t row = l.kv_cache_bytes / static_cast<uint64_t>(stack.kv_cache_rows);
      const uint64_t bytes = row * static_cast<uint64_t>(std::min(n_tokens, stack.kv_cache_rows));
      if (bytes > 0) kv_s = static_cast<double>(bytes) / device.link_rate(bytes);
    }
    c.kv_copy_s.push_back(kv_s);
  }
  return c;
}

StepPrediction play_out(const StackProfile& stack, const StepCosts& costs, std::span<const Placement> placements,
                        const ScheduleShape& shape) {
  StepPrediction p;
  play_out_into(stack, costs, placements, shape, &p);
  return p;
}

StepPrediction predict_step(const StackProfile& stack, std::span<const Placement> placements,
                            const DeviceProfile& device, int64_t n_tokens, const ScheduleShape& shape) {
  if (!device.has_rates())
    fail(ErrorCategory::INVALID_ARGUMENT,
         "cost model: the device profile '" + device.name + "' has no measured rates (run `ferry calibrate`)");
  if (placements.size() != stack.layers.size())
    fail(ErrorCategory::INVALID_ARGUMENT, "cost model: " + std::to_string(placements.size()) + " placements for " +
                                              std::to_string(stack.layers.size()) + " layers");
  if (n_tokens < 1 || shape.prefetch_depth < 1)
    fail(ErrorCategory::INVALID_ARGUMENT, "cost model: a step needs at least one token and one layer of prefetch");
  return play_out(stack, step_costs(stack, device, n_tokens), placements, shape);
}

RunCosts::RunCosts(const StackProfile& stack, const DeviceProfile& device, int64_t prompt_tokens,
                   int64_t generated_tokens)
    : m_stack(&stack),
      m_prompt_tokens(std::max<int64_t>(prompt_tokens, 0)),
      m_generated_tokens(generated_tokens),
      m_full_steps(m_prompt_tokens / std::max<int64_t>(stack.max_tokens, 1)),
      m_token(step_costs(stack, device, 1)) {
  const int64_t step = std::max<int64_t>(stack.max_tokens, 1);
  if (m_full_steps > 0) m_full = step_costs(stack, device, step);
  if (m_prompt_tokens % step > 0) m_last = step_costs(stack, device, m_prompt_tokens % step);
  if (device.has_gpu && stack.kv_cache_rows > 0)
    for (const LayerDemand& l : stack.layers) {
      const uint64_t row = l.kv_cache_bytes / static_cast<uint64_t>(stack.kv_cache_rows);
      const uint64_t chunk = row * static_cast<uint64_t>(step);  // a chunk's worth: the size the link moves at
      m_kv_row_s.push_back(row > 0 ? static_cast<double>(row) / device.link_rate(chunk) : 0.0);
    }
}

double RunCosts::kv_read_s(std::span<const Placement> placements, const ScheduleShape& shape, bool generation) const {
  if (m_kv_row_s.size() != placements.size()) return 0.0;
  const int64_t step = std::max<int64_t>(m_stack->max_tokens, 1);
  const int64_t last = m_prompt_tokens % step;
  // Rows read over the prompt: full chunk k reads k * step rows; the last, shorter chunk reads all the full ones'.
  const double full_rows =
      static_cast<double>(step) * static_cast<double>(m_full_steps) * static_cast<double>(m_full_steps - 1) / 2.0;
  const double last_rows = static_cast<double>(m_full_steps * step);
  // Decode steps read the whole sequence so far when they run phased layers on the GPU (threshold 0).
  const double decode_rows =
      static_cast<double>(m_prompt_tokens) * static_cast<double>(m_generated_tokens) +
      static_cast<double>(m_generated_tokens) * static_cast<double>(m_generated_tokens - 1) / 2.0;
  double rows = 0.0;
  if (generation) {
    if (1 > shape.phased_cpu_max_tokens) rows = decode_rows;
  } else {
    if (step > shape.phased_cpu_max_tokens) rows += full_rows;
    if (last > shape.phased_cpu_max_tokens) rows += last_rows;
  }
  if (rows == 0.0) return 0.0;
  double per_row = 0.0;
  for (size_t i = 0; i < placements.size(); ++i)
    if (placements[i] == Placement::PHASED) per_row += m_kv_row_s[i];
  return rows * per_row;
}

RunPrediction RunCosts::predict(std::span<const Placement> placements, const ScheduleShape& shape) const {
  RunPrediction r;
  double prompt_s = 0.0;
  if (m_full)
    prompt_s += static_cast<double>(m_full_steps) * play_out_into(*m_stack, *m_full, placements, shape, nullptr);
  if (m_last) prompt_s += play_out_into(*m_stack, *m_last, placements, shape, nullptr);
  prompt_s += kv_read_s(placements, shape, false);
  double token_s = play_out_into(*m_stack, m_token, placements, shape, nullptr);
  if (m_generated_tokens > 0) token_s += kv_read_s(placements, shape, true) / static_cast<double>(m_generated_tokens);
  r.prompt_tokens_per_s = prompt_s > 0.0 ? static_cast<double>(m_prompt_tokens) / prompt_s : 0.0;
  r.generate_tokens_per_s = token_s > 0.0 ? 1.0 / token_s : 0.0;
  r.total_s = prompt_s + token_s * static_cast<double>(m_generated_tokens);
  return r;
}

RunPrediction predict_run(const StackProfile& stack, std::span<const Placement> placements, const DeviceProfile& device,
                          int64_t prompt_tokens, int64_t generated_tokens, const ScheduleShape& shape) {
  return RunCosts(stack, device, prompt_tokens, generated_tokens).predict(placements, shape);
}

}  // namespace ferry
