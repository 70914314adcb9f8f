// Manual placement overrides (`--resident REGEX`, `--stream REGEX`, `--cpu REGEX`, `--phased REGEX`): the layers whose
// name matches are forced to that placement and the planner places the rest. A pattern is an ECMAScript regular
// expression matched against a layer's whole name ("blk.7", "output"): `blk\.(0|1)` is the first two blocks, `blk\.1`
// is block 1 only (not block 10), `blk\..*` every block. Whole-name matching is chosen over search so that a number
// never matches its prefix silently.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ferry/offload/placement.hpp"
#include "ferry/policies/stack_profile.hpp"

namespace ferry {

struct PlacementOverride {
  std::string flag;     // where it came from, for messages ("--resident")
  std::string pattern;  // the regular expression
  Placement placement = Placement::CPU;
};

// The placement each layer of `stack` is forced to, or nullopt where the planner decides. INVALID_ARGUMENT naming the
// flag and the pattern for a pattern that is not a valid regular expression, one that matches no layer (listing the
// layers' names), or a layer that two overrides force to different placements.
std::vector<std::optional<Placement>> resolve_overrides(std::span<const PlacementOverride> overrides,
                                                        const StackProfile& stack);

// "blk.0 .. blk.3, output" style list of the layers `forced` puts at `placement` (for messages); empty when none.
std::string forced_layer_names(const StackProfile& stack, const std::vector<std::optional<Placement>>& forced,
                               Placement placement);

}  // namespace ferry
