// `ferry dump MODEL TENSOR [-o FILE]`: one tensor dequantized to little-endian float32 through the scalar reference
// (ferry::ref::dequantize), element order as stored (ne[0] fastest). This is the path other tools and the interop
// tests compare against, so it uses the oracle, not a fast kernel.
//
// Memory: a large embedding can be gigabytes of float32, so the tensor is converted in chunks of whole blocks
// (kChunkElements floats) that are dequantized in parallel with oneTBB and appended to a temporary file, which is
// renamed over the target only when everything was written.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <bit>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "value_text.hpp"

namespace ferry::cli {
namespace {

// The output format is little-endian float32; on a little-endian host that is the in-memory layout.
static_assert(std::endian::native == std::endian::little, "ferry dump writes host floats as little-endian");

constexpr int64_t kChunkElements = int64_t{1} << 22;  // 16 MiB of float32 per chunk: large writes, bounded memory
constexpr int64_t kGrainElements = int64_t{1} << 14;  // 64 KiB of output per task: amortises the task overhead

struct DumpOptions {
  std::string model;
  std::string tensor;
  std::string output;
};

// Levenshtein distance; names are short (< 100 bytes) and files hold at most a few thousand tensors.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// Up to three names close to `wanted`: small edit distance first, then names that contain it.
std::vector<std::string> close_names(const GgufFile& file, std::string_view wanted) {
  std::vector<std::pair<size_t, std::string>> scored;
  const size_t limit = std::max<size_t>(2, wanted.size() / 4);
  for (const GgufTensorInfo& t : file.tensors()) {
    const size_t d = edit_distance(wanted, t.name);
    if (d <= limit)
      scored.emplace_back(d, t.name);
    else if (!wanted.empty() && t.name.find(wanted) != std::string::npos)
      scored.emplace_back(limit + 1, t.name);
  }
  std::stable_sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < 3; ++i) out.push_back(scored[i].second);
  return out;
}

[[noreturn]] void fail_unknown_tensor(const GgufFile& file, const std::string& wanted) {
  std::string message = "tensor " + quote_name(wanted) + " not found in " + file.name() + " (" +
                        std::to_string(file.tensors().size()) + " tensors)";
  const std::vector<std::string> close = close_names(file, wanted);
  for (size_t i = 0; i < close.size(); ++i) message += (i == 0 ? "; did you mean '" : "', '") + close[i];
  if (!close.empty())
    message += "'?";
  else
    message += "; `ferry info " + file.name() + "` lists them";
  fail(ErrorCategory::NOT_FOUND, message);
}

// Dequantizes blocks [first_block, first_block + n_blocks) of the tensor into `out`, in parallel.
void dequantize_blocks(const TypeTraits& traits, std::span<const std::byte> data, int64_t first_block, int64_t n_blocks,
                       float* out) {
  const int64_t grain = std::max<int64_t>(1, kGrainElements / traits.block_size);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_blocks, grain), [&](const tbb::blocked_range<int64_t>& r) {
    const std::byte* src = data.data() + (first_block + r.begin()) * static_cast<int64_t>(traits.type_size);
    const int64_t n = static_cast<int64_t>(r.size()) * traits.block_size;
    ref::dequantize(traits.type, src, out + r.begin() * traits.block_size, n);
  });
}

// Calls sink(span of bytes) once per chunk, in order.
template <class Sink>
void convert(const GgufTensorInfo& info, const TypeTraits& traits, std::span<const std::byte> data, Sink&& sink) {
  const int64_t total_blocks = info.n_elements / traits.block_size;
  const int64_t chunk_blocks = std::max<int64_t>(1, kChunkElements / traits.block_size);
  std::vector<float> buffer(static_cast<size_t>(std::min(total_blocks, chunk_blocks) * traits.block_size));
  for (int64_t first = 0; first < total_blocks; first += chunk_blocks) {
    const int64_t n_blocks = std::min(chunk_blocks, total_blocks - first);
    dequantize_blocks(traits, data, first, n_blocks, buffer.data());
    sink(std::as_bytes(std::span<const float>(buffer.data(), static_cast<size_t>(n_blocks * traits.block_size))));
  }
}

int run_dump(const DumpOptions& options) {
  const bool to_stdout = options.output.empty() || options.output == "-";
  // Checked before the (possibly long) open so the mistake is reported at once.
  if (to_stdout && ::isatty(STDOUT_FILENO))
    fail(ErrorCategory::INVALID_ARGUMENT,
         "dump: refusing to write binary float32 data to a terminal; give -o FILE (or redirect standard output)");

  const GgufFile file = GgufFile::open(options.model);
  const GgufTensorInfo* info = file.find_tensor(options.tensor);
  if (!info) fail_unknown_tensor(file, options.tensor);
  const TypeTraits& traits = type_traits(info->type);
  if (!traits.dequantizable)
    fail(ErrorCategory::UNSUPPORTED, file.name() + ": tensor " + quote_name(info->name) + " has type " +
                                         std::string(traits.name) + ", which ferry cannot dequantize");
  if (info->n_elements % traits.block_size != 0)  // the reader guarantees it; a violation is ferry's bug
    fail(ErrorCategory::INTERNAL, file.name() + ": tensor " + quote_name(info->name) + " has " +
                                      std::to_string(info->n_elements) + " elements, not a multiple of the " +
                                      std::string(traits.name) + " block");
  const std::span<const std::byte> data = file.tensor_data(*info);

  if (to_stdout) {
    convert(*info, traits, data, [&](std::span<const std::byte> bytes) {
      if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size())
        fail(ErrorCategory::IO, "dump: cannot write tensor " + quote_name(info->name) + " to standard output");
    });
    if (std::fflush(stdout) != 0)
      fail(ErrorCategory::IO, "dump: cannot write tensor " + quote_name(info->name) + " to standard output");
    return 0;
  }

  AtomicFile out(options.output);
  convert(*info, traits, data, [&](std::span<const std::byte> bytes) { out.write(bytes); });
  out.commit();
  std::string shape;
  for (size_t i = 0; i < info->ne.size(); ++i) shape += concat(i ? " x " : "", std::to_string(info->ne[i]));
  std::printf("%s: %s, ne %s, %lld float32 values (%llu bytes) written to %s\n", info->name.c_str(),
              std::string(traits.name).c_str(), shape.c_str(), static_cast<long long>(info->n_elements),
              static_cast<unsigned long long>(info->n_elements) * 4ull, options.output.c_str());
  return 0;
}

}  // namespace

Action add_dump_command(CLI::App& app) {
  auto options = std::make_shared<DumpOptions>();
  CLI::App* sub = app.add_subcommand("dump", "Write one tensor dequantized to little-endian float32 (reference path)");
  sub->add_option("MODEL", options->model, "GGUF file")->required();
  sub->add_option("TENSOR", options->tensor, "Tensor name, as `ferry info` lists it")->required();
  sub->add_option("-o,--output", options->output,
                  "Output file, written atomically (default or '-': standard output, unless it is a terminal)");
  return [options] { return run_dump(*options); };
}

}  // namespace ferry::cli
