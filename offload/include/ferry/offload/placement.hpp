// Where one layer's weights live and where it runs during a step. Every layer of a scheduled stack has exactly one.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry {

enum class Placement : uint8_t {
  RESIDENT,  // weights in the device arena for the whole run; computed on the GPU
  STREAMED,  // weights in the pinned host pool, copied into a staging slot every step; computed on the GPU
  CPU,       // weights stay in host memory; computed on the oneTBB pool, activations copied through pinned buffers
  // Per phase: weights in the pinned host pool; a step of more than StackOptions::phased_cpu_max_tokens tokens (a
  // prompt) streams them into a staging slot and computes on the GPU, a smaller step (decode) computes on the CPU
  // while the link streams the STREAMED layers — host memory serves the CPU and the link at once. The KV cache lives
  // in pinned host memory; a GPU step moves the rows it reads and writes through one device KV buffer.
  PHASED,
};

// Where a layer runs in a step of n_tokens: PHASED resolves to STREAMED or CPU, the others are themselves.
Placement placement_for_step(Placement placement, int64_t n_tokens, int64_t phased_cpu_max_tokens) noexcept;

std::string_view placement_name(Placement placement) noexcept;  // "resident", "streamed", "cpu", "phased"
// Case-insensitive inverse of placement_name.
std::optional<Placement> parse_placement(std::string_view name) noexcept;

}  // namespace ferry
