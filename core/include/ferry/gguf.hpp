// GgufFile: a validated, memory-mapped GGUF file (versions 2 and 3). Opening it parses and checks everything: every
// length, count, dimension and offset is computed with overflow checks and compared with the file size before
// anything is read or allocated, so a hostile file is rejected with a message naming the file, the offset and what
// was expected — never a crash. What parsing allocates is bounded by the file's size times a small factor (a string
// array costs a std::string, 32 bytes, per 8-byte empty element in the file); tensor data is never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/ggml_type.hpp"
#include "ferry/gguf_value.hpp"

namespace ferry {

inline constexpr uint64_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // n_dims entries, ne[0] contiguous
  GgmlType type;            // always a type in the table (unknown ids are rejected at open)
  uint64_t offset;          // relative to data_offset(), as stored
  uint64_t file_offset;     // from the start of the file
  uint64_t n_bytes;
  int64_t n_elements;
  int64_t rows() const noexcept { return ne.empty() || ne[0] == 0 ? 0 : n_elements / ne[0]; }
};

class MappedFile;  // ferry/mapped_file.hpp

class GgufFile {
 public:
  // Maps and validates a file. Throws IO (cannot open/map) or FORMAT/UNSUPPORTED (bad content).
  static GgufFile open(const std::filesystem::path& path);
  // The header alone (metadata and tensor table, every check on them), read with ordinary reads of the first bytes of
  // the file: no tensor byte is read or mapped, and a file whose data is missing or cut short still opens. For what
  // needs only shapes and types (sizing a stack, a plan). has_data() is false; tensor_data() throws.
  static GgufFile open_header(const std::filesystem::path& path);
  // Validates a buffer that the caller keeps alive (fuzzer, tests). `name` stands for the path in messages.
  static GgufFile from_memory(std::span<const std::byte> bytes, std::string name);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::string& name() const noexcept { return m_name; }
  uint32_t version() const noexcept { return m_version; }
  uint64_t alignment() const noexcept { return m_alignment; }
  uint64_t data_offset() const noexcept { return m_data_offset; }
  uint64_t file_size() const noexcept { return m_bytes.size(); }
  std::span<const std::byte> bytes() const noexcept { return m_bytes; }
  // False for a file opened with open_header.
  bool has_data() const noexcept { return m_has_data; }

  // Metadata in file order.
  const std::vector<GgufKeyValue>& metadata() const noexcept { return m_metadata; }
  const GgufValue* find(std::string_view key) const noexcept;
  // Throws NOT_FOUND naming the key and file.
  const GgufValue& at(std::string_view key) const;
  // Typed access (see GgufValue::as): NOT_FOUND if absent, FORMAT if of a type that does not convert.
  template <class T>
  T get(std::string_view key) const {
    return at(key).as<T>(describe_key(key));
  }
  template <class T>
  std::optional<T> get_optional(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    return v->as<T>(describe_key(key));
  }
  std::string get_string(std::string_view key) const { return at(key).as_string(describe_key(key)); }
  template <class T>
  std::vector<T> get_array(std::string_view key) const {
    return at(key).array_as<T>(describe_key(key));
  }
  const std::vector<std::string>& get_string_array(std::string_view key) const {
    return at(key).as_string_array(describe_key(key));
  }

  // Tensors in file order.
  const std::vector<GgufTensorInfo>& tensors() const noexcept { return m_tensors; }
  const GgufTensorInfo* find_tensor(std::string_view name) const noexcept;
  // Throws NOT_FOUND naming the tensor and file.
  const GgufTensorInfo& tensor(std::string_view name) const;
  // The tensor's bytes inside the mapping (valid while this GgufFile lives).
  std::span<const std::byte> tensor_data(const GgufTensorInfo& info) const;

 private:
  GgufFile() = default;
  std::string describe_key(std::string_view key) const;
  void parse();

  std::string m_name;
  std::unique_ptr<MappedFile> m_mapping;  // null for from_memory
  std::span<const std::byte> m_bytes;
  uint32_t m_version = 0;
  uint64_t m_alignment = kGgufDefaultAlignment;
  uint64_t m_data_offset = 0;
  std::vector<GgufKeyValue> m_metadata;
  std::vector<GgufTensorInfo> m_tensors;
  bool m_has_data = true;
  std::vector<std::byte> m_header;  // open_header: the bytes read
};

}  // namespace ferry
