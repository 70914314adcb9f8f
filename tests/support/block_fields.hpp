// Where the half-precision scale fields sit in GGUF blocks, for tests that must keep those fields finite in random
// blocks. Written from gguf.md's field order, independently of the structs in block_layouts.hpp, so a layout error
// there is not repeated here.
#pragma once

#include <vector>

#include "ferry/ggml_type.hpp"

namespace ferry::test {

// Byte offsets of the half-precision scale fields (d, dmin, m) in one block of each type; empty for types without.
inline std::vector<int> half_field_offsets(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS:
      return {0};
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      return {0, 2};
    case GgmlType::Q2_K:
      return {80, 82};  // scales[16], qs[64], d, dmin
    case GgmlType::Q3_K:
      return {108};  // hmask[32], qs[64], scales[12], d
    case GgmlType::Q6_K:
      return {208};  // ql[128], qh[64], scales[16], d
    default:
      return {};
  }
}

}  // namespace ferry::test
