// GGUF v3 writer. The layout is the canonical one (what the reference writers produce): header, metadata, tensor
// table, zero padding to the alignment, then each tensor in table order at the next aligned offset, each followed by
// zero padding to the alignment. A file read by GgufFile and written back through copy_of is therefore identical.
#include "ferry/gguf_writer.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>
#include <utility>

#include "ferry/atomic_file.hpp"
#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"

namespace ferry {
namespace {

constexpr uint32_t kGgufVersion = 3;
constexpr std::string_view kAlignmentKey = "general.alignment";

// Appends `n` zero bytes (alignment padding) without allocating a buffer of that size.
void write_zeros(AtomicFile& out, uint64_t n) {
  static constexpr std::byte kZeros[4096] = {};
  while (n > 0) {
    const auto chunk = static_cast<size_t>(std::min<uint64_t>(n, sizeof(kZeros)));
    out.write(std::span<const std::byte>(kZeros, chunk));
    n -= chunk;
  }
}

// Little-endian serialisation into the in-memory header (the host is little-endian; see gguf_value.cpp).
class HeaderBuffer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void string(std::string_view s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void raw(const void* p, size_t n) {
    if (n == 0) return;
    const auto* b = static_cast<const uint8_t*>(p);
    m_bytes.insert(m_bytes.end(), b, b + n);
  }
  void value(const std::string& key, const GgufValue& v) {
    u32(static_cast<uint32_t>(v.type()));
    switch (v.type()) {
      case GgufValueType::STRING:
        string(v.as_string(key));
        break;
      case GgufValueType::ARRAY:
        u32(static_cast<uint32_t>(v.array_type()));
        u64(v.array_size());
        if (v.array_type() == GgufValueType::STRING) {
          for (const auto& s : v.as_string_array(key)) string(s);
        } else {
          raw(v.array_bytes().data(), v.array_bytes().size());
        }
        break;
      default: {
        const uint64_t bits = v.scalar_bits();
        raw(&bits, value_type_size(v.type()));
      }
    }
  }
  const std::vector<uint8_t>& bytes() const noexcept { return m_bytes; }

 private:
  std::vector<uint8_t> m_bytes;
};

uint64_t align_or_fail(uint64_t value, uint64_t alignment, const std::string& what) {
  const auto aligned = checked_align_up(value, alignment);
  if (!aligned) fail(ErrorCategory::INVALID_ARGUMENT, "GgufWriter: " + what + " overflows 64 bits");
  return *aligned;
}

}  // namespace

GgufWriter::GgufWriter(uint64_t alignment) : m_alignment(alignment) {
  if (!std::has_single_bit(alignment) || alignment > UINT32_MAX)
    fail(ErrorCategory::INVALID_ARGUMENT,
         "GgufWriter: alignment " + std::to_string(alignment) + " is not a power of two that fits in 32 bits");
}

void GgufWriter::set(std::string key, GgufValue value) {
  for (auto& kv : m_metadata) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  m_metadata.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, TensorFill fill) {
  const std::string ctx = "GgufWriter: tensor '" + name + "'";
  if (!fill) fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": no data callback");
  for (const auto& t : m_tensors)
    if (t.name == name) fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": duplicate tensor name");
  const TypeTraits* traits = find_type_traits(static_cast<uint32_t>(type));
  if (!traits)
    fail(ErrorCategory::INVALID_ARGUMENT,
         ctx + ": unknown GGML type id " + std::to_string(static_cast<uint32_t>(type)));
  if (ne.empty() || ne.size() > kGgufMaxDims)
    fail(ErrorCategory::INVALID_ARGUMENT,
         ctx + ": " + std::to_string(ne.size()) + " dimensions, expected 1.." + std::to_string(kGgufMaxDims));
  uint64_t rows = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 0)
      fail(ErrorCategory::INVALID_ARGUMENT,
           ctx + ": ne[" + std::to_string(d) + "] = " + std::to_string(ne[d]) + " is negative");
    const auto r = d == 0 ? std::optional<uint64_t>(rows) : checked_mul(rows, static_cast<uint64_t>(ne[d]));
    if (!r || *r > static_cast<uint64_t>(INT64_MAX))
      fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": the dimensions overflow when multiplied");
    rows = *r;
  }
  const auto elements = checked_mul(rows, static_cast<uint64_t>(ne[0]));
  if (!elements || *elements > static_cast<uint64_t>(INT64_MAX))
    fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": the dimensions overflow when multiplied");
  if (ne[0] % traits->block_size != 0)
    fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": ne[0] = " + std::to_string(ne[0]) + " is not a multiple of " +
                                              std::string(traits->name) + "'s block size " +
                                              std::to_string(traits->block_size));
  const auto row = checked_mul(static_cast<uint64_t>(ne[0]) / traits->block_size, traits->type_size);
  const auto n_bytes = row ? checked_mul(*row, rows) : std::nullopt;
  if (!n_bytes) fail(ErrorCategory::INVALID_ARGUMENT, ctx + ": the byte size overflows 64 bits");
  m_tensors.push_back(PendingTensor{std::move(name), type, std::move(ne), *n_bytes, std::move(fill)});
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<int64_t> ne, std::span<const std::byte> data) {
  const std::string tensor_name = name;
  // Validate the shape first so the size comparison below uses the checked byte count.
  add_tensor(std::move(name), type, std::move(ne), [data](std::span<std::byte> out) {
    if (!out.empty()) std::memcpy(out.data(), data.data(), out.size());  // an empty span may hold a null pointer
  });
  if (m_tensors.back().n_bytes != data.size()) {
    const uint64_t expected = m_tensors.back().n_bytes;
    m_tensors.pop_back();
    fail(ErrorCategory::INVALID_ARGUMENT, "GgufWriter: tensor '" + tensor_name + "': data has " +
                                              std::to_string(data.size()) + " bytes, expected " +
                                              std::to_string(expected));
  }
}

void GgufWriter::write(const std::filesystem::path& path, const Progress& progress) const {
  // general.alignment decides the layout when a reader opens the file, so it must agree with m_alignment.
  const GgufValue* alignment_value = nullptr;
  for (const auto& kv : m_metadata)
    if (kv.first == kAlignmentKey) alignment_value = &kv.second;
  if (alignment_value &&
      (alignment_value->type() != GgufValueType::UINT32 || alignment_value->scalar_bits() != m_alignment))
    fail(ErrorCategory::INVALID_ARGUMENT,
         path.string() + ": general.alignment is set to a " + value_type_name(alignment_value->type()) +
             " value that is not the writer's alignment " + std::to_string(m_alignment) + " (UINT32)");
  const bool add_alignment_key = !alignment_value && m_alignment != kGgufDefaultAlignment;

  HeaderBuffer header;
  header.raw("GGUF", 4);
  header.u32(kGgufVersion);
  header.u64(m_tensors.size());
  header.u64(m_metadata.size() + (add_alignment_key ? 1 : 0));
  if (add_alignment_key) {
    header.string(kAlignmentKey);
    header.value(std::string(kAlignmentKey), GgufValue::scalar(static_cast<uint32_t>(m_alignment)));
  }
  for (const auto& [key, value] : m_metadata) {
    header.string(key);
    header.value(key, value);
  }
  uint64_t offset = 0, total_bytes = 0, max_bytes = 0;
  for (const auto& t : m_tensors) {
    header.string(t.name);
    header.u32(static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) header.u64(static_cast<uint64_t>(n));
    header.u32(static_cast<uint32_t>(t.type));
    header.u64(offset);
    const auto end = checked_add(offset, t.n_bytes);
    if (!end)
      fail(ErrorCategory::INVALID_ARGUMENT, "GgufWriter: the tensor data of " + path.string() + " overflows 64 bits");
    offset = align_or_fail(*end, m_alignment, "the tensor data of " + path.string());
    total_bytes += t.n_bytes;
    max_bytes = std::max(max_bytes, t.n_bytes);
  }
  const uint64_t header_size = header.bytes().size();
  const uint64_t data_start = align_or_fail(header_size, m_alignment, "the header");

  AtomicFile out(path);
  out.write(std::as_bytes(std::span(header.bytes())));
  write_zeros(out, data_start - header_size);
  // One buffer, sized for the largest tensor, is reused: memory stays at one tensor however large the model is.
  std::vector<std::byte> buffer;
  uint64_t done_bytes = 0;
  for (size_t i = 0; i < m_tensors.size(); ++i) {
    const PendingTensor& t = m_tensors[i];
    if (buffer.size() < t.n_bytes) buffer.resize(static_cast<size_t>(max_bytes));
    const std::span<std::byte> data(buffer.data(), static_cast<size_t>(t.n_bytes));
    // Zeroed first so a callback that leaves bytes unwritten produces a deterministic file, not stale memory.
    std::fill(data.begin(), data.end(), std::byte{0});
    t.fill(data);
    out.write(data);
    write_zeros(out, align_or_fail(t.n_bytes, m_alignment, "tensor '" + t.name + "'") - t.n_bytes);
    done_bytes += t.n_bytes;
    if (progress) progress(i + 1, m_tensors.size(), done_bytes, total_bytes);
  }
  out.commit();
}

GgufWriter GgufWriter::copy_of(const GgufFile& file) {
  GgufWriter writer(file.alignment());
  // Keys are copied as they are, general.alignment included (it is present whenever the alignment is not 32).
  writer.m_metadata.reserve(file.metadata().size());
  for (const auto& kv : file.metadata()) writer.m_metadata.emplace_back(kv.key, kv.value);
  for (const auto& t : file.tensors()) writer.add_tensor(t.name, t.type, t.ne, file.tensor_data(t));
  return writer;
}

}  // namespace ferry
