#include "ferry/text/logits_file.hpp"

#include <bit>
#include <cstring>
#include <string>

#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"

namespace ferry {

// The layout is little-endian, written with memcpy from host values (as the GGUF writer does).
static_assert(std::endian::native == std::endian::little, "ferry assumes a little-endian host");

LogitsWriter::LogitsWriter(const std::filesystem::path& path, int64_t n_vocab) : m_n_vocab(n_vocab) {
  if (n_vocab < 1 || n_vocab > UINT32_MAX)
    fail(ErrorCategory::INVALID_ARGUMENT,
         path.string() + ": a logits file needs 1 to 2^32 - 1 logits per row, not " + std::to_string(n_vocab));
  m_file = std::make_unique<AtomicFile>(path);
  std::byte header[kLogitsFileHeaderBytes];
  const auto vocab = static_cast<uint32_t>(n_vocab);
  std::memcpy(header, kLogitsFileMagic, 8);
  std::memcpy(header + 8, &kLogitsFileVersion, 4);
  std::memcpy(header + 12, &vocab, 4);
  m_file->write(header);
  m_row.resize(8 + 4 * static_cast<size_t>(n_vocab));
}

LogitsWriter::~LogitsWriter() = default;

void LogitsWriter::write_row(int64_t position, int32_t token, std::span<const float> logits) {
  if (static_cast<int64_t>(logits.size()) != m_n_vocab)
    fail(ErrorCategory::INVALID_ARGUMENT, m_file->target().string() + ": a row of " + std::to_string(logits.size()) +
                                              " logits in a file of " + std::to_string(m_n_vocab) + " per row");
  const auto pos = static_cast<int32_t>(position);
  std::memcpy(m_row.data(), &pos, 4);
  std::memcpy(m_row.data() + 4, &token, 4);
  std::memcpy(m_row.data() + 8, logits.data(), logits.size_bytes());
  m_file->write(m_row);
  ++m_rows;
}

void LogitsWriter::commit() { m_file->commit(); }

LogitsRecorder::LogitsRecorder(CausalLm& inner, LogitsWriter& writer) : m_inner(inner), m_writer(writer) {}

void LogitsRecorder::forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) {
  const int64_t n_vocab = m_inner.n_vocab();
  const auto T = static_cast<int64_t>(tokens.size());
  const size_t wanted = static_cast<size_t>((all_logits ? T : 1) * n_vocab);
  if (logits.size() < wanted)
    fail(ErrorCategory::INVALID_ARGUMENT, "logits recorder: room for " + std::to_string(logits.size()) + " logits, " +
                                              std::to_string(wanted) + " needed");
  m_rows.resize(static_cast<size_t>(T * n_vocab));
  m_inner.forward(tokens, pos0, m_rows, true);
  for (int64_t t = 0; t < T; ++t)
    m_writer.write_row(pos0 + t, tokens[static_cast<size_t>(t)],
                       std::span<const float>(m_rows.data() + t * n_vocab, static_cast<size_t>(n_vocab)));
  std::memcpy(logits.data(), m_rows.data() + (m_rows.size() - wanted), wanted * sizeof(float));
}

}  // namespace ferry
