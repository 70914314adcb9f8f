// GGUF parsing and validation. The file is untrusted: counts are bounded by the bytes that remain before any vector is
// reserved, every product and sum goes through checked_math, and every tensor's byte range is proven to lie inside
// the file (and not to overlap another tensor) before GgufFile hands out a span of it.
#include "ferry/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <unordered_map>
#include <utility>

#include "ferry/checked_math.hpp"
#include "ferry/error.hpp"
#include "ferry/mapped_file.hpp"
#include "gguf_cursor.hpp"

namespace ferry {
namespace {

using detail::ByteCursor;

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
// Smallest possible encodings, used to bound counts by the bytes left: a kv pair is an empty key (u64 length), a
// value type (u32) and a one-byte value; a tensor entry is an empty name, n_dims, one dimension, a type and an offset.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint64_t kMinStringBytes = 8;
constexpr uint32_t kMaxValueType = static_cast<uint32_t>(GgufValueType::FLOAT64);

std::string at_byte(uint64_t pos) { return " (at byte " + std::to_string(pos) + ")"; }

std::string entry_at(uint64_t pos) { return " (tensor table entry at byte " + std::to_string(pos) + ")"; }

// Rejects a count whose smallest encoding would not fit in what is left of the file, before anything is reserved.
void check_count(const ByteCursor& c, const std::string& file, uint64_t count, uint64_t min_bytes, uint64_t count_pos,
                 std::string_view what) {
  const auto needed = checked_mul(count, min_bytes);
  if (!needed || *needed > c.remaining())
    fail(ErrorCategory::FORMAT, file + ": " + std::string(what) + " count " + std::to_string(count) +
                                    at_byte(count_pos) + " needs at least " +
                                    (needed ? std::to_string(*needed) : std::string("2^64")) + " bytes but only " +
                                    std::to_string(c.remaining()) + " bytes follow (file size " +
                                    std::to_string(c.size()) + "; truncated or corrupt)");
}

// Reserves room for `count` elements, but never more bytes than the file has left: the count has only been proven
// plausible (each element needs a few bytes of file), and an element in memory can be much larger than its smallest
// encoding. Past the cap, vectors grow with what is actually parsed.
template <class T>
void reserve_bounded(std::vector<T>& v, uint64_t count, uint64_t remaining) {
  v.reserve(static_cast<size_t>(std::min<uint64_t>(count, remaining / sizeof(T))));
}

// Ids that GGML once used and dropped; a file holding them comes from an old or experimental converter.
bool is_removed_type_id(uint32_t id) { return id == 4 || id == 5 || (id >= 31 && id <= 33) || (id >= 36 && id <= 38); }

GgufValue read_value(ByteCursor& c, const std::string& file, uint32_t type, uint64_t type_pos, const std::string& ctx) {
  if (type > kMaxValueType)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": unknown value type " + std::to_string(type) + at_byte(type_pos));
  const auto t = static_cast<GgufValueType>(type);
  if (t == GgufValueType::STRING) return GgufValue::string(c.string(ctx + ": string value"));
  if (t != GgufValueType::ARRAY) {
    const uint64_t bits = c.scalar(value_type_size(t), ctx + ": " + value_type_name(t) + " value");
    return GgufValue::raw_scalar(t, bits);
  }

  const uint64_t elem_pos = c.pos();
  const uint32_t elem_type = c.u32(ctx + ": array element type");
  const uint64_t count_pos = c.pos();
  const uint64_t count = c.u64(ctx + ": array length");
  if (elem_type == static_cast<uint32_t>(GgufValueType::ARRAY))
    fail(ErrorCategory::UNSUPPORTED,
         file + ": " + ctx + ": nested arrays (an ARRAY of ARRAY) are not supported" + at_byte(elem_pos));
  if (elem_type > kMaxValueType)
    fail(ErrorCategory::FORMAT,
         file + ": " + ctx + ": unknown array element type " + std::to_string(elem_type) + at_byte(elem_pos));
  const auto et = static_cast<GgufValueType>(elem_type);
  if (et == GgufValueType::STRING) {
    check_count(c, file, count, kMinStringBytes, count_pos, ctx + ": string array");
    std::vector<std::string> strings;
    reserve_bounded(strings, count, c.remaining());
    // One context string for every element (building it per element would copy the key once per element, quadratic
    // in a hostile file); the index is added only when an element fails.
    const std::string element_ctx = ctx + ": string array element";
    for (uint64_t i = 0; i < count; ++i) {
      try {
        strings.push_back(c.string(element_ctx));
      } catch (const Error& e) {
        fail(e.category(),
             std::string(e.what()) + " (element " + std::to_string(i) + " of " + std::to_string(count) + ")");
      }
    }
    return GgufValue::string_array(std::move(strings));
  }
  const auto n_bytes = checked_mul(count, value_type_size(et));
  if (!n_bytes || *n_bytes > c.remaining())
    fail(ErrorCategory::FORMAT, file + ": truncated or corrupt: " + ctx + ": array of " + std::to_string(count) + " " +
                                    value_type_name(et) + at_byte(count_pos) + " needs " +
                                    (n_bytes ? std::to_string(*n_bytes) : std::string("2^64 or more")) +
                                    " bytes but only " + std::to_string(c.remaining()) + " bytes follow");
  return GgufValue::raw_array(et, count, c.raw(*n_bytes, ctx + ": array data"));
}

// What the header says: each count with where it stands in the file (for messages).
struct GgufHeader {
  uint32_t version = 0;
  uint64_t n_tensors = 0, n_tensors_pos = 0;
  uint64_t n_kv = 0, n_kv_pos = 0;
};

struct MetadataSection {
  std::vector<GgufKeyValue> entries;  // in file order
  uint64_t alignment = kGgufDefaultAlignment;
};

struct TensorTable {
  std::vector<GgufTensorInfo> tensors;  // file_offset not yet set
  std::vector<uint64_t> entry_pos;      // where each tensor's table entry starts, for messages
};

std::string tensor_ctx(const std::string& name, uint64_t index) {
  return "tensor " + quote_name(name) + " (index " + std::to_string(index) + ")";
}

// Magic, version and the two counts; both counts are bounded by the bytes that follow before anything is reserved.
GgufHeader read_header(ByteCursor& c, std::span<const std::byte> bytes, const std::string& file) {
  c.need(sizeof(kMagic), "the GGUF magic");
  if (std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    std::string found;
    for (size_t i = 0; i < sizeof(kMagic); ++i) {
      const auto b = static_cast<unsigned char>(bytes[i]);
      constexpr char kHex[] = "0123456789abcdef";
      if (b >= 0x20 && b < 0x7f)
        found += static_cast<char>(b);
      else
        found += std::string("\\x") + kHex[b >> 4] + kHex[b & 15];
    }
    fail(ErrorCategory::FORMAT, file + ": not a GGUF file: magic '" + found + "' at byte 0, expected 'GGUF'");
  }
  c.scalar(4, "the GGUF magic");
  GgufHeader h;
  h.version = c.u32("the version");
  if (h.version != 2 && h.version != 3) {
    std::string hint;
    if (h.version == 1) hint = " (version 1 used 32-bit counts; convert the file again with a current converter)";
    const uint32_t swapped = __builtin_bswap32(h.version);
    if (swapped == 2 || swapped == 3) hint = " (the file looks big-endian, which ferry does not read)";
    fail(ErrorCategory::UNSUPPORTED, file + ": GGUF version " + std::to_string(h.version) + at_byte(4) +
                                         " is not supported; ferry reads versions 2 and 3" + hint);
  }
  h.n_tensors_pos = c.pos();
  h.n_tensors = c.u64("the tensor count");
  h.n_kv_pos = c.pos();
  h.n_kv = c.u64("the metadata count");
  check_count(c, file, h.n_kv, kMinKvBytes, h.n_kv_pos, "metadata key-value");
  check_count(c, file, h.n_tensors, kMinTensorInfoBytes, h.n_tensors_pos, "tensor");
  return h;
}

// The key-value pairs: unique keys, and general.alignment (when present) a UINT32 power of two.
MetadataSection read_metadata(ByteCursor& c, const std::string& file, const GgufHeader& h) {
  MetadataSection section;
  std::unordered_map<std::string, uint64_t> key_index;
  reserve_bounded(section.entries, h.n_kv, c.remaining());
  for (uint64_t i = 0; i < h.n_kv; ++i) {
    const uint64_t kv_pos = c.pos();
    std::string key = c.string("the key of kv pair #" + std::to_string(i));
    const std::string ctx = "key " + quote_name(key) + " (kv pair #" + std::to_string(i) + ")";
    if (auto [it, inserted] = key_index.emplace(key, i); !inserted)
      fail(ErrorCategory::FORMAT,
           file + ": duplicate " + ctx + at_byte(kv_pos) + "; first defined by kv pair #" + std::to_string(it->second));
    const uint64_t type_pos = c.pos();
    const uint32_t type = c.u32(ctx + ": value type");
    GgufValue value = read_value(c, file, type, type_pos, ctx);
    if (key == "general.alignment") {
      if (value.type() != GgufValueType::UINT32)
        fail(ErrorCategory::FORMAT,
             file + ": " + ctx + at_byte(kv_pos) + " has type " + value_type_name(value.type()) + ", expected UINT32");
      const uint64_t a = value.scalar_bits();
      if (!std::has_single_bit(a))
        fail(ErrorCategory::FORMAT,
             file + ": " + ctx + at_byte(kv_pos) + ": alignment " + std::to_string(a) + " is not a power of two");
      section.alignment = a;
    }
    section.entries.push_back({std::move(key), std::move(value)});
  }
  return section;
}

// One table entry: a unique name, 1..4 dimensions whose element and row counts fit in int64, a known type whose
// block divides ne[0], a byte size that fits in 64 bits, and the offset as stored (checked by place_tensor_data).
GgufTensorInfo read_tensor_info(ByteCursor& c, const std::string& file, uint64_t i, uint64_t pos,
                                std::unordered_map<std::string, uint64_t>& name_index) {
  std::string name = c.string("the name of tensor #" + std::to_string(i));
  const std::string ctx = tensor_ctx(name, i);
  if (auto [it, inserted] = name_index.emplace(name, i); !inserted)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": duplicate tensor name" + entry_at(pos) +
                                    "; first used by the tensor at index " + std::to_string(it->second));
  const uint32_t n_dims = c.u32(ctx + ": n_dims");
  if (n_dims < 1 || n_dims > kGgufMaxDims)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": n_dims " + std::to_string(n_dims) + " is outside 1.." +
                                    std::to_string(kGgufMaxDims) + entry_at(pos));
  std::vector<int64_t> ne(n_dims);
  std::string dims;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const uint64_t v = c.u64(ctx + ": ne[" + std::to_string(d) + "]");
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(ErrorCategory::FORMAT, file + ": " + ctx + ": dimension ne[" + std::to_string(d) +
                                      "] = " + std::to_string(static_cast<int64_t>(v)) + " is negative (stored as " +
                                      std::to_string(v) + ")" + entry_at(pos));
    ne[d] = static_cast<int64_t>(v);
    dims += (d ? ", " : "") + std::to_string(v);
  }
  // Both the element count and the row count (every dimension but ne[0]) must fit in int64: a zero ne[0] must not
  // hide an overflowing row count from code that iterates over rows.
  std::optional<uint64_t> n_elements = static_cast<uint64_t>(ne[0]);
  std::optional<uint64_t> n_rows = 1;
  for (uint32_t d = 1; d < n_dims && n_elements && n_rows; ++d) {
    n_elements = checked_mul(*n_elements, static_cast<uint64_t>(ne[d]));
    n_rows = checked_mul(*n_rows, static_cast<uint64_t>(ne[d]));
  }
  constexpr auto kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!n_elements || !n_rows || *n_elements > kInt64Max || *n_rows > kInt64Max)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": dimensions [" + dims +
                                    "] overflow a 64-bit element count when multiplied" + entry_at(pos));
  const uint64_t type_pos = c.pos();
  const uint32_t type_id = c.u32(ctx + ": type id");
  const TypeTraits* traits = find_type_traits(type_id);
  if (!traits)
    fail(ErrorCategory::UNSUPPORTED, file + ": " + ctx + ": unknown GGML type id " + std::to_string(type_id) +
                                         (is_removed_type_id(type_id) ? " (a type removed from GGML)" : "") +
                                         at_byte(type_pos) + entry_at(pos));
  if (ne[0] % traits->block_size != 0)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": type " + std::string(traits->name) + " needs ne[0] to be a " +
                                    "multiple of its block size " + std::to_string(traits->block_size) +
                                    ", but ne[0] = " + std::to_string(ne[0]) + entry_at(pos));
  const auto row = checked_mul(static_cast<uint64_t>(ne[0]) / traits->block_size, traits->type_size);
  const auto n_bytes = row ? checked_mul(*row, *n_rows) : std::nullopt;
  if (!n_bytes)
    fail(ErrorCategory::FORMAT, file + ": " + ctx + ": byte size of dimensions [" + dims + "] in type " +
                                    std::string(traits->name) + " overflows 64 bits" + entry_at(pos));
  const uint64_t offset = c.u64(ctx + ": data offset");
  return GgufTensorInfo{
      std::move(name), std::move(ne), traits->type, offset, 0, *n_bytes, static_cast<int64_t>(*n_elements)};
}

// The tensor table, after the metadata. The tensor count is checked again against what the metadata left.
TensorTable read_tensor_table(ByteCursor& c, const std::string& file, const GgufHeader& h) {
  check_count(c, file, h.n_tensors, kMinTensorInfoBytes, h.n_tensors_pos, "tensor");
  TensorTable table;
  std::unordered_map<std::string, uint64_t> name_index;
  reserve_bounded(table.tensors, h.n_tensors, c.remaining());
  reserve_bounded(table.entry_pos, h.n_tensors, c.remaining());
  for (uint64_t i = 0; i < h.n_tensors; ++i) {
    const uint64_t pos = c.pos();
    table.tensors.push_back(read_tensor_info(c, file, i, pos, name_index));
    table.entry_pos.push_back(pos);
  }
  return table;
}

// The data section starts at the table's end aligned up; every tensor's offset is aligned and, when the data is there
// to check (`with_data`: not for a header read alone), its bytes lie inside the file. Sets each tensor's file_offset
// and returns the data section's start.
uint64_t place_tensor_data(const ByteCursor& c, const std::string& file, uint64_t alignment, TensorTable& table,
                           bool with_data) {
  const uint64_t table_end = c.pos();
  const auto data_offset = checked_align_up(table_end, alignment);
  if (!data_offset)
    fail(ErrorCategory::FORMAT, file + ": the tensor table end " + std::to_string(table_end) +
                                    " overflows when aligned to " + std::to_string(alignment));
  // A file without tensors may end right after its metadata: it has no data section to find.
  if (with_data && !table.tensors.empty() && *data_offset > c.size())
    fail(ErrorCategory::FORMAT, file + ": truncated: the tensor data section starts at byte " +
                                    std::to_string(*data_offset) + " (tensor table ends at byte " +
                                    std::to_string(table_end) + ", aligned to " + std::to_string(alignment) +
                                    ") but the file has " + std::to_string(c.size()) + " bytes");
  for (size_t i = 0; i < table.tensors.size(); ++i) {
    GgufTensorInfo& t = table.tensors[i];
    const std::string ctx = tensor_ctx(t.name, i);
    if (t.offset % alignment != 0)
      fail(ErrorCategory::FORMAT, file + ": " + ctx + ": offset " + std::to_string(t.offset) +
                                      " is not a multiple of the alignment " + std::to_string(alignment) +
                                      entry_at(table.entry_pos[i]));
    const auto begin = checked_add(*data_offset, t.offset);
    const auto end = begin ? checked_add(*begin, t.n_bytes) : std::nullopt;
    if (!end)
      fail(ErrorCategory::FORMAT, file + ": " + ctx + ": offset " + std::to_string(t.offset) + " + data start " +
                                      std::to_string(*data_offset) + " + size " + std::to_string(t.n_bytes) +
                                      " wraps around 2^64" + entry_at(table.entry_pos[i]));
    if (with_data && *end > c.size())
      fail(ErrorCategory::FORMAT, file + ": " + ctx + ": data [" + std::to_string(*begin) + ", " +
                                      std::to_string(*end) + ") of " + std::to_string(t.n_bytes) +
                                      " bytes runs past the end of the file (" + std::to_string(c.size()) +
                                      " bytes; truncated?)" + entry_at(table.entry_pos[i]));
    t.file_offset = *begin;
  }
  return *data_offset;
}

// Tensors may come in any order in the table; sort their ranges to find overlaps. Empty tensors occupy nothing.
void check_no_overlap(const std::string& file, const TensorTable& table) {
  const std::vector<GgufTensorInfo>& tensors = table.tensors;
  std::vector<size_t> order;
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].n_bytes > 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::pair(tensors[a].file_offset, a) < std::pair(tensors[b].file_offset, b);
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const GgufTensorInfo& prev = tensors[order[k - 1]];
    const GgufTensorInfo& next = tensors[order[k]];
    if (next.file_offset < prev.file_offset + prev.n_bytes) {
      const auto range = [](const GgufTensorInfo& t) {
        return "bytes [" + std::to_string(t.file_offset) + ", " + std::to_string(t.file_offset + t.n_bytes) + ")";
      };
      fail(ErrorCategory::FORMAT, file + ": the data of tensor " + quote_name(prev.name) + " (index " +
                                      std::to_string(order[k - 1]) + ", " + range(prev) + ") and tensor " +
                                      quote_name(next.name) + " (index " + std::to_string(order[k]) + ", " +
                                      range(next) + ") overlap (tensor table entries at bytes " +
                                      std::to_string(table.entry_pos[order[k - 1]]) + " and " +
                                      std::to_string(table.entry_pos[order[k]]) + ")");
    }
  }
}

}  // namespace

GgufFile GgufFile::open(const std::filesystem::path& path) {
  GgufFile file;
  file.m_name = path.string();
  file.m_mapping = std::make_unique<MappedFile>(path);
  file.m_bytes = file.m_mapping->bytes();
  file.parse();
  return file;
}

GgufFile GgufFile::open_header(const std::filesystem::path& path) {
  // The header's length is known only once it is parsed: read a prefix, and a longer one while the parse runs out of
  // bytes before the file does (headers with large vocabularies run to tens of megabytes; most fit the first read).
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    fail(ErrorCategory::IO, path.string() + ": not a regular file (or it cannot be read); ferry reads models from "
                                            "regular files only");
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) fail(ErrorCategory::IO, path.string() + ": cannot read its size: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorCategory::IO, path.string() + ": cannot open");
  for (uint64_t want = std::min<uint64_t>(size, uint64_t{4} << 20);; want = std::min<uint64_t>(size, want * 4)) {
    GgufFile file;
    file.m_name = path.string();
    file.m_has_data = false;
    file.m_header.resize(static_cast<size_t>(want));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(file.m_header.data()), static_cast<std::streamsize>(want)))
      fail(ErrorCategory::IO, path.string() + ": cannot read its first " + std::to_string(want) + " bytes");
    file.m_bytes = file.m_header;
    try {
      file.parse();
      return file;
    } catch (const Error&) {
      if (want >= size) throw;  // the whole file was read: the error is the file's
    }
  }
}

GgufFile GgufFile::from_memory(std::span<const std::byte> bytes, std::string name) {
  GgufFile file;
  file.m_name = std::move(name);
  file.m_bytes = bytes;
  file.parse();
  return file;
}

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

// The passes run in file order and each relies on what the previous ones proved.
void GgufFile::parse() {
  ByteCursor c(m_bytes, m_name);
  const GgufHeader header = read_header(c, m_bytes, m_name);
  m_version = header.version;
  MetadataSection metadata = read_metadata(c, m_name, header);
  m_alignment = metadata.alignment;
  m_metadata = std::move(metadata.entries);
  TensorTable table = read_tensor_table(c, m_name, header);
  m_data_offset = place_tensor_data(c, m_name, m_alignment, table, m_has_data);
  check_no_overlap(m_name, table);
  m_tensors = std::move(table.tensors);
}

const GgufValue* GgufFile::find(std::string_view key) const noexcept {
  for (const auto& kv : m_metadata)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail(ErrorCategory::NOT_FOUND, m_name + ": metadata key '" + std::string(key) + "' not found");
  return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const noexcept {
  for (const auto& t : m_tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  if (!t)
    fail(ErrorCategory::NOT_FOUND, m_name + ": tensor " + quote_name(name) + " not found (the file has " +
                                       std::to_string(m_tensors.size()) + " tensors)");
  return *t;
}

std::span<const std::byte> GgufFile::tensor_data(const GgufTensorInfo& info) const {
  if (!m_has_data)
    fail(ErrorCategory::INVALID_ARGUMENT, m_name + ": tensor " + quote_name(info.name) +
                                              ": the file was opened header-only (GgufFile::open_header)");
  // parse() proved the range for this file's tensors; an info from another file could still point anywhere.
  const auto end = checked_add(info.file_offset, info.n_bytes);
  if (!end || *end > m_bytes.size())
    fail(ErrorCategory::INVALID_ARGUMENT, m_name + ": tensor " + quote_name(info.name) + " with bytes [" +
                                              std::to_string(info.file_offset) + ", +" + std::to_string(info.n_bytes) +
                                              ") is not inside this file");
  return m_bytes.subspan(static_cast<size_t>(info.file_offset), static_cast<size_t>(info.n_bytes));
}

std::string GgufFile::describe_key(std::string_view key) const { return "key " + quote_name(key) + " in " + m_name; }

}  // namespace ferry
