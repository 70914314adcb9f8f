#include "ferry/offload/placement.hpp"

#include <cctype>
#include <string>

namespace ferry {

std::string_view placement_name(Placement placement) noexcept {
  switch (placement) {
    case Placement::RESIDENT:
      return "resident";
    case Placement::STREAMED:
      return "streamed";
    case Placement::CPU:
      return "cpu";
    case Placement::PHASED:
      return "phased";
  }
  return "?";
}

std::optional<Placement> parse_placement(std::string_view name) noexcept {
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  for (Placement p : {Placement::RESIDENT, Placement::STREAMED, Placement::CPU, Placement::PHASED})
    if (placement_name(p) == lower) return p;
  return std::nullopt;
}

Placement placement_for_step(Placement placement, int64_t n_tokens, int64_t phased_cpu_max_tokens) noexcept {
  if (placement != Placement::PHASED) return placement;
  return n_tokens > phased_cpu_max_tokens ? Placement::STREAMED : Placement::CPU;
}

}  // namespace ferry
