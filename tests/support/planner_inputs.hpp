// Planner inputs shared by the policy tests (test_overrides, test_phased, test_policies): a llama-like stack profile of
// equal Q8_0 blocks and a plan request.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ferry/policies/planner.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry::test {

// n blocks "blk.0".. of one `rows` x 4096 Q8_0 matrix (rows * 4352 bytes) and 2 MiB of KV cache each, then an
// "output" head of the same matrix without one, as a llama stack is named. kv_cache_rows: the rows each cache holds
// (0: unknown, so the cost model does not price K/V rows).
inline StackProfile llama_like_stack(int n, int64_t rows, int64_t max_tokens, int64_t kv_cache_rows = 0) {
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  StackProfile s;
  s.model = "test stack";
  s.max_tokens = max_tokens;
  s.kv_cache_rows = kv_cache_rows;
  for (int i = 0; i <= n; ++i) {
    LayerDemand d;
    d.name = i < n ? "blk." + std::to_string(i) : "output";
    d.width = 4096;
    d.matmuls.push_back(QuantMatrixView{GgmlType::Q8_0, nullptr, 4096, rows});
    d.weight_bytes = static_cast<uint64_t>(rows) * 4352;
    d.kv_cache_bytes = i < n ? 2 * kMiB : 0;
    d.workspace_floats_cpu = d.workspace_floats_gpu = 1 << 16;
    s.layers.push_back(d);
  }
  return s;
}

inline PlanRequest plan_request(Policy policy, uint64_t budget, int64_t max_tokens,
                                std::vector<PlacementOverride> overrides = {}) {
  PlanRequest r;
  r.policy = policy;
  r.vram_budget = budget;
  r.options.max_tokens = max_tokens;
  r.overrides = std::move(overrides);
  return r;
}

}  // namespace ferry::test
