// GgufWriter: builds a GGUF v3 file. Metadata is kept in insertion order; tensor data is produced by a callback at
// write time and streamed to disk, so a multi-gigabyte model never needs to be in memory at once. The file appears
// atomically: it is written to a temporary file beside the target, flushed, then renamed over it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ferry/ggml_type.hpp"
#include "ferry/atomic_file.hpp"  // write_file_atomically, for the writers that include only this
#include "ferry/gguf_value.hpp"

namespace ferry {

class GgufFile;

class GgufWriter {
 public:
  // Fills `out` (exactly the tensor's byte size) with the tensor's data.
  using TensorFill = std::function<void(std::span<std::byte> out)>;
  // Called after each tensor is written: (tensors done, total tensors, bytes done, total bytes).
  using Progress = std::function<void(size_t, size_t, uint64_t, uint64_t)>;

  // alignment must be a power of two; a value other than 32 is also written as general.alignment (u32) unless the
  // caller sets that key itself.
  explicit GgufWriter(uint64_t alignment = 32);

  // Adds or replaces a key (a replaced key keeps its position).
  void set(std::string key, GgufValue value);
  // Tensor data comes from `fill` at write time. Throws INVALID_ARGUMENT for bad shapes, duplicate names or a row
  // length that is not a multiple of the type's block.
  void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, TensorFill fill);
  // Convenience: data already in memory (copied at write time from the span, which must outlive write()).
  void add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::span<const std::byte> data);

  // Writes the file atomically. Throws IO on failure (the temporary file is removed).
  void write(const std::filesystem::path& path, const Progress& progress = {}) const;

  // Copies metadata (in order) and tensors (data from the source mapping) of an opened file: writing the result
  // reproduces the file byte for byte when the source was written by a canonical writer.
  static GgufWriter copy_of(const GgufFile& file);

 private:
  struct PendingTensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> ne;
    uint64_t n_bytes;
    TensorFill fill;
  };
  uint64_t m_alignment;
  std::vector<std::pair<std::string, GgufValue>> m_metadata;
  std::vector<PendingTensor> m_tensors;
};

}  // namespace ferry
