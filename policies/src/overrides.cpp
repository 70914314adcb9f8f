#include "ferry/policies/overrides.hpp"

#include <regex>

#include "ferry/error.hpp"

namespace ferry {
namespace {

std::string layer_names(const StackProfile& stack) {
  std::string s;
  for (size_t i = 0; i < stack.layers.size(); ++i) {
    if (i > 0) s += ", ";
    if (stack.layers.size() > 8 && i == 3) {  // a long stack: the first three and the last three are enough
      s += "..., ";
      i = stack.layers.size() - 3;
    }
    s += stack.layers[i].name;
  }
  return s;
}

}  // namespace

std::vector<std::optional<Placement>> resolve_overrides(std::span<const PlacementOverride> overrides,
                                                        const StackProfile& stack) {
  std::vector<std::optional<Placement>> forced(stack.layers.size());
  std::vector<const PlacementOverride*> by(stack.layers.size(), nullptr);
  for (const PlacementOverride& o : overrides) {
    std::regex re;
    try {
      re = std::regex(o.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      fail(ErrorCategory::INVALID_ARGUMENT,
           o.flag + ": " + quote_name(o.pattern) + " is not a valid regular expression (" + e.what() + ")");
    }
    bool matched = false;
    for (size_t i = 0; i < stack.layers.size(); ++i) {
      if (!std::regex_match(stack.layers[i].name, re)) continue;
      matched = true;
      if (forced[i] && *forced[i] != o.placement)
        fail(ErrorCategory::INVALID_ARGUMENT,
             "layer '" + stack.layers[i].name + "' is forced " + std::string(placement_name(*forced[i])) + " by " +
                 by[i]->flag + " " + quote_name(by[i]->pattern) + " and " + std::string(placement_name(o.placement)) +
                 " by " + o.flag + " " + quote_name(o.pattern) + ": one placement per layer");
      forced[i] = o.placement;
      by[i] = &o;
    }
    if (!matched)
      fail(ErrorCategory::INVALID_ARGUMENT,
           o.flag + ": " + quote_name(o.pattern) +
               " matches no layer of the model (a pattern matches a whole name; the layers are " + layer_names(stack) +
               ")");
  }
  return forced;
}

std::string forced_layer_names(const StackProfile& stack, const std::vector<std::optional<Placement>>& forced,
                               Placement placement) {
  std::string s;
  size_t n = 0;
  for (size_t i = 0; i < forced.size() && i < stack.layers.size(); ++i) {
    if (forced[i] != placement) continue;
    if (++n > 6) continue;  // counted below
    if (!s.empty()) s += ", ";
    s += stack.layers[i].name;
  }
  if (n > 6) s += " and " + std::to_string(n - 6) + " more";
  return s;
}

}  // namespace ferry
