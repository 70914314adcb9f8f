// Finding the weight that broke a model: when a forward pass produces NaN or infinite logits, the first tensor of the
// file holding a non-finite value is usually why (a corrupted download, a bad conversion). Only run after such a
// failure: it dequantizes every tensor.
#pragma once

#include <optional>
#include <string>

namespace ferry {

class GgufFile;

// "tensor 'output_norm.weight' holds NaN at element 17", for the first such tensor in file order; nullopt when every
// value of every tensor ferry can dequantize is finite.
std::optional<std::string> find_non_finite_weight(const GgufFile& file);

}  // namespace ferry
