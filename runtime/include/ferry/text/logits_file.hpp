// The `--logits-out` file of `run` and `perplexity`: the model's logits at every evaluated position, for comparison
// with another implementation (llama.cpp, transformers). Little-endian throughout:
//
//   offset  size  field
//   0       8     magic "FERRYLGT"
//   8       4     uint32 version (1)
//   12      4     uint32 n_vocab
//   16      ...   rows to the end of the file, each 8 + 4 * n_vocab bytes:
//                   int32 position  (in its sequence: 0 starts a fresh cache; a perplexity chunk restarts at 0)
//                   int32 token     (the token evaluated at that position; its logits predict the next one)
//                   float32 logits[n_vocab]
//
// The number of rows is (file size - 16) / (8 + 4 * n_vocab): the count is not in the header because `run` does not
// know in advance where generation stops, and the file is written atomically (AtomicFile), so a file that exists is
// complete. numpy: np.fromfile(path, dtype=[("position", "<i4"), ("token", "<i4"), ("logits", "<f4", n_vocab)],
// offset=16).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "ferry/text/generate.hpp"

namespace ferry {

class AtomicFile;

inline constexpr char kLogitsFileMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'L', 'G', 'T'};
inline constexpr uint32_t kLogitsFileVersion = 1;
inline constexpr uint64_t kLogitsFileHeaderBytes = 16;

class LogitsWriter {
 public:
  // Writes the header to a temporary beside `path` (AtomicFile); nothing appears under `path` before commit().
  LogitsWriter(const std::filesystem::path& path, int64_t n_vocab);
  ~LogitsWriter();
  LogitsWriter(const LogitsWriter&) = delete;
  LogitsWriter& operator=(const LogitsWriter&) = delete;

  // Throws INVALID_ARGUMENT when `logits` does not hold n_vocab values, IO when the write fails.
  void write_row(int64_t position, int32_t token, std::span<const float> logits);
  void commit();
  int64_t rows() const noexcept { return m_rows; }

 private:
  std::unique_ptr<AtomicFile> m_file;
  int64_t m_n_vocab;
  int64_t m_rows = 0;
  std::vector<std::byte> m_row;  // one row's bytes, reused
};

// A CausalLm that records every evaluated position's logits while passing its calls through: what `run
// --logits-out` drives generation with. The inner model must allow all_logits (LlamaRunnerOptions::all_logits).
class LogitsRecorder final : public CausalLm {
 public:
  LogitsRecorder(CausalLm& inner, LogitsWriter& writer);

  int64_t n_ctx() const noexcept override { return m_inner.n_ctx(); }
  int64_t n_vocab() const noexcept override { return m_inner.n_vocab(); }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override;

 private:
  CausalLm& m_inner;
  LogitsWriter& m_writer;
  std::vector<float> m_rows;
};

}  // namespace ferry
