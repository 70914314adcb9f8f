#include "ferry/models/weight_scan.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/ref/quants.hpp"

namespace ferry {

std::optional<std::string> find_non_finite_weight(const GgufFile& file) {
  constexpr int64_t kChunkBlocks = 4096;
  for (const GgufTensorInfo& t : file.tensors()) {
    const TypeTraits& traits = type_traits(t.type);
    if (!traits.dequantizable || t.n_bytes == 0) continue;
    const std::span<const std::byte> data = file.tensor_data(t);
    const int64_t n_blocks = static_cast<int64_t>(t.n_bytes / traits.type_size);
    std::atomic<int64_t> first{INT64_MAX};
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_blocks, kChunkBlocks),
                      [&](const tbb::blocked_range<int64_t>& r) {
                        std::vector<float> values(static_cast<size_t>(r.size() * traits.block_size));
                        ref::dequantize(t.type, data.data() + r.begin() * static_cast<int64_t>(traits.type_size),
                                        values.data(), static_cast<int64_t>(values.size()));
                        for (size_t i = 0; i < values.size(); ++i)
                          if (!std::isfinite(values[i])) {
                            const int64_t at = r.begin() * traits.block_size + static_cast<int64_t>(i);
                            int64_t seen = first.load();
                            while (at < seen && !first.compare_exchange_weak(seen, at)) {
                            }
                            break;
                          }
                      });
    if (first.load() != INT64_MAX) {
      const int64_t at = first.load();
      std::vector<float> block(static_cast<size_t>(traits.block_size));
      ref::dequantize(t.type, data.data() + at / traits.block_size * static_cast<int64_t>(traits.type_size),
                      block.data(), traits.block_size);
      const float v = block[static_cast<size_t>(at % traits.block_size)];
      return "tensor " + quote_name(t.name) + " holds " +
             (std::isnan(v) ? "NaN"
              : v > 0       ? "+Inf"
                            : "-Inf") +
             " at element " + std::to_string(at);
    }
  }
  return std::nullopt;
}

}  // namespace ferry
