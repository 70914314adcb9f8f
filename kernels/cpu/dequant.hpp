// Internal entry of cpu::dequantize for callers that already validated the type and count and run inside a parallel
// region: it never spawns tasks itself, so a caller holding a per-thread buffer cannot have its thread steal another
// task that reuses that buffer. Not a public header.
#pragma once

#include <cstdint>

#include "ferry/ggml_type.hpp"

namespace ferry::cpu::detail {

// n a positive multiple of the type's block size; the type dequantizable.
void dequantize_serial(GgmlType type, const void* src, float* dst, int64_t n);

}  // namespace ferry::cpu::detail
