// What a planner knows of a model: each layer's demand (weight bytes, KV cache, workspaces, the matrices it
// multiplies) at the step size of the run, in stack order. Built from a model file's header by the family (e.g.
// llama_stack_profile), with no weight read and no GPU touched, or from built layers; both give the same numbers,
// since both ask the layers (offload's layer_demand).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/offload/demand.hpp"

namespace ferry {

struct StackProfile {
  std::string model;  // where it came from (a file name), for messages
  int64_t max_tokens = 1;
  std::vector<LayerDemand> layers;
  // The K/V rows each layer's kv_cache_bytes holds (context x sequences), so that a row is kv_cache_bytes / rows: what
  // a phased layer's GPU step moves per token. 0 where the family does not say (the cost model then leaves it out).
  int64_t kv_cache_rows = 0;
  uint64_t weight_bytes() const noexcept;  // every layer's, as laid out
};

}  // namespace ferry
