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
};

std::string_view placement_name(Placement placement) noexcept;  // "resident", "streamed", "cpu"
// Case-insensitive inverse of placement_name.
std::optional<Placement> parse_placement(std::string_view name) noexcept;

}  // namespace ferry
