// Hostile and broken GGUF files, built in memory from a valid file assembled byte by byte from the format
// description (independently of GgufWriter, which the first test checks against it). Every corruption must be refused
// with ferry::Error of the expected category, a message naming the file and a byte offset and the detail that went
// wrong; none may crash (CI runs this under ASan and UBSan).
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

using namespace ferry;
using ferry::test::read_file_bytes;

namespace {

constexpr const char* kName = "bad.gguf";
constexpr uint64_t k2p40 = uint64_t{1} << 40;
constexpr uint64_t k2p62 = uint64_t{1} << 62;
constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

struct Tensor {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;
  uint64_t offset;
  std::vector<std::byte> data;
};

// Field positions in the base file, for targeted corruption.
struct Entry {
  size_t start, n_dims, ne[2], type, offset;
};

struct Base {
  std::vector<std::byte> bytes;
  size_t version, n_tensors, n_kv;
  size_t arch_key_len, arch_type, arch_value_len, align_type, align_value;
  size_t floats_elem_type, floats_count, tokens_count;
  Entry entry[3];
  size_t data_offset;
  std::vector<Tensor> tensors;
  std::vector<float> floats;
  std::vector<std::string> tokens;
  uint64_t u64_value;
};

class Builder {
 public:
  size_t u32(uint32_t v) { return raw(&v, 4); }
  size_t u64(uint64_t v) { return raw(&v, 8); }
  size_t str(const std::string& s) {
    const size_t pos = u64(s.size());
    raw(s.data(), s.size());
    return pos;
  }
  size_t raw(const void* p, size_t n) {
    const size_t pos = m_bytes.size();
    const auto* b = static_cast<const std::byte*>(p);
    m_bytes.insert(m_bytes.end(), b, b + n);
    return pos;
  }
  void pad_to(size_t alignment) {
    while (m_bytes.size() % alignment) m_bytes.push_back(std::byte{0});
  }
  size_t size() const { return m_bytes.size(); }
  std::vector<std::byte> take() { return std::move(m_bytes); }

 private:
  std::vector<std::byte> m_bytes;
};

// Options that change the structure (not just one field) of the base file.
struct Variant {
  std::string last_key = "test.u64";
  std::string last_tensor = "blk.0.ffn_down.weight";
};

Base make_base(const Variant& variant = {}) {
  Base base;
  std::mt19937_64 rng(test::test_seed(20240601));
  base.floats = ferry::test::random_floats(5, test::test_seed(11));
  base.tokens = {"<s>", "", "h\xc3\xa9llo"};
  base.u64_value = rng();
  base.tensors = {
      {"token_embd.weight", GgmlType::Q4_0, {64, 3}, 0, {}},     // 108 bytes at 0
      {"blk.0.attn_norm.weight", GgmlType::F32, {13}, 128, {}},  // 52 bytes at 128
      {variant.last_tensor, GgmlType::Q4_K, {256, 2}, 192, {}},  // 288 bytes at 192
  };
  for (auto& t : base.tensors) {
    const uint64_t n = row_bytes(t.type, t.ne[0]) * (t.ne.size() > 1 ? static_cast<uint64_t>(t.ne[1]) : 1);
    t.data.resize(n);
    for (auto& b : t.data) b = static_cast<std::byte>(rng() & 0xff);
  }

  Builder b;
  b.raw("GGUF", 4);
  base.version = b.u32(3);
  base.n_tensors = b.u64(3);
  base.n_kv = b.u64(5);
  base.arch_key_len = b.str("general.architecture");
  base.arch_type = b.u32(8);
  base.arch_value_len = b.str("llama");
  b.str("general.alignment");
  base.align_type = b.u32(4);
  base.align_value = b.u32(32);
  b.str("test.floats");
  b.u32(9);
  base.floats_elem_type = b.u32(6);
  base.floats_count = b.u64(base.floats.size());
  b.raw(base.floats.data(), base.floats.size() * 4);
  b.str("tokenizer.ggml.tokens");
  b.u32(9);
  b.u32(8);
  base.tokens_count = b.u64(base.tokens.size());
  for (const auto& s : base.tokens) b.str(s);
  b.str(variant.last_key);
  b.u32(10);
  b.u64(base.u64_value);
  for (size_t i = 0; i < 3; ++i) {
    const Tensor& t = base.tensors[i];
    Entry& e = base.entry[i];
    e.start = b.str(t.name);
    e.n_dims = b.u32(static_cast<uint32_t>(t.ne.size()));
    for (size_t d = 0; d < t.ne.size(); ++d) e.ne[d] = b.u64(static_cast<uint64_t>(t.ne[d]));
    e.type = b.u32(static_cast<uint32_t>(t.type));
    e.offset = b.u64(t.offset);
  }
  b.pad_to(32);
  base.data_offset = b.size();
  for (const Tensor& t : base.tensors) {
    const uint8_t zero = 0;
    while (b.size() < base.data_offset + t.offset) b.raw(&zero, 1);
    b.raw(t.data.data(), t.data.size());
  }
  b.pad_to(32);
  base.bytes = b.take();
  return base;
}

void write_file_bytes(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
std::vector<std::byte> patched(std::vector<std::byte> bytes, size_t pos, T value) {
  std::memcpy(bytes.data() + pos, &value, sizeof(T));
  return bytes;
}

// Parses `bytes` and requires a ferry::Error of `category` whose message names the file, a byte offset and `parts`.
void expect_error(const std::vector<std::byte>& bytes, ErrorCategory category, const std::vector<std::string>& parts) {
  try {
    const GgufFile f = GgufFile::from_memory(bytes, kName);
    FAIL("accepted a bad file with " << f.tensors().size() << " tensors");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(e.category() == category);
    CHECK(msg.rfind(std::string(kName) + ": ", 0) == 0);
    CHECK(msg.find("byte") != std::string::npos);
    for (const auto& p : parts) {
      CAPTURE(p);
      CHECK(msg.find(p) != std::string::npos);
    }
  }
}

// Touches everything a valid file exposes, so a parse that "succeeds" with bad ranges is caught by ASan.
uint64_t walk(const GgufFile& f) {
  uint64_t sum = 0;
  for (const auto& kv : f.metadata()) {
    sum += kv.key.size() + kv.value.array_size() + kv.value.scalar_bits();
    if (kv.value.type() == GgufValueType::STRING) sum += kv.value.as_string(kv.key).size();
    if (kv.value.is_array() && kv.value.array_type() == GgufValueType::STRING)
      for (const auto& s : kv.value.as_string_array(kv.key)) sum += s.size();
  }
  for (const auto& t : f.tensors())
    for (std::byte b : f.tensor_data(t)) sum += static_cast<uint8_t>(b);
  return sum;
}

}  // namespace

TEST_CASE("gguf bad input: the hand-built base file is valid and is exactly what GgufWriter writes") {
  const Base base = make_base();
  const GgufFile f = GgufFile::from_memory(base.bytes, kName);
  CHECK(f.version() == 3);
  CHECK(f.data_offset() == base.data_offset);
  REQUIRE(f.tensors().size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    const auto data = f.tensor_data(f.tensors()[i]);
    REQUIRE(data.size() == base.tensors[i].data.size());
    CHECK(std::memcmp(data.data(), base.tensors[i].data.data(), data.size()) == 0);
  }
  CHECK(f.get_array<float>("test.floats") == base.floats);
  CHECK(f.get_string_array("tokenizer.ggml.tokens") == base.tokens);

  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("general.alignment", GgufValue::scalar(uint32_t{32}));
  w.set("test.floats", GgufValue::array(base.floats));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(base.tokens));
  w.set("test.u64", GgufValue::scalar(base.u64_value));
  for (const Tensor& t : base.tensors) w.add_tensor(t.name, t.type, t.ne, std::span<const std::byte>(t.data));
  ferry::test::TempDir dir;
  w.write(dir.path() / "base.gguf");
  CHECK(read_file_bytes(dir.path() / "base.gguf") == base.bytes);

  // Version 2 reads the same way.
  CHECK(GgufFile::from_memory(patched(base.bytes, base.version, uint32_t{2}), kName).version() == 2);
}

TEST_CASE("gguf bad input: truncation at every byte") {
  const Base base = make_base();
  const size_t last_tensor_end = base.data_offset + base.tensors[2].offset + base.tensors[2].data.size();
  REQUIRE(last_tensor_end == base.bytes.size());
  for (size_t n = 0; n < base.bytes.size(); ++n) {
    CAPTURE(n);
    const std::vector<std::byte> cut(base.bytes.begin(), base.bytes.begin() + static_cast<ptrdiff_t>(n));
    if (n < base.data_offset)
      expect_error(cut, ErrorCategory::FORMAT, {"truncated"});
    else
      expect_error(cut, ErrorCategory::FORMAT, {"tensor '", "past the end of the file"});
  }
}

TEST_CASE("gguf bad input: header") {
  const Base base = make_base();
  auto magic = base.bytes;
  magic[3] = std::byte{'X'};
  expect_error(magic, ErrorCategory::FORMAT, {"magic", "GGUX"});
  magic[0] = std::byte{0x89};  // non-printable bytes are shown in hex
  magic[1] = std::byte{0x0a};
  expect_error(magic, ErrorCategory::FORMAT, {"magic '\\x89\\x0aUX'"});
  expect_error(patched(base.bytes, base.version, uint32_t{1}), ErrorCategory::UNSUPPORTED, {"version 1 "});
  expect_error(patched(base.bytes, base.version, uint32_t{999}), ErrorCategory::UNSUPPORTED, {"version 999"});
  expect_error(patched(base.bytes, base.version, uint32_t{0x03000000}), ErrorCategory::UNSUPPORTED, {"big-endian"});
  expect_error(patched(base.bytes, base.n_kv, k2p40), ErrorCategory::FORMAT, {"key-value count 1099511627776"});
  expect_error(patched(base.bytes, base.n_tensors, k2p40), ErrorCategory::FORMAT, {"tensor count 1099511627776"});
  expect_error(patched(base.bytes, base.n_kv, kU64Max), ErrorCategory::FORMAT, {"at least 2^64 bytes"});
  expect_error(patched(base.bytes, base.n_tensors, kU64Max), ErrorCategory::FORMAT, {"tensor count"});
  // Counts that fit the file but are wrong make the parser read other sections as entries: still only errors.
  for (uint64_t n : {2u, 4u, 6u}) {
    CAPTURE(n);
    CHECK_THROWS_AS(GgufFile::from_memory(patched(base.bytes, base.n_kv, n), kName), Error);
  }
  CHECK_THROWS_AS(GgufFile::from_memory(patched(base.bytes, base.n_tensors, uint64_t{4}), kName), Error);
}

TEST_CASE("gguf bad input: metadata values") {
  const Base base = make_base();
  expect_error(patched(base.bytes, base.arch_type, uint32_t{13}), ErrorCategory::FORMAT,
               {"general.architecture", "unknown value type 13"});
  expect_error(patched(base.bytes, base.arch_type, uint32_t{0xffffffff}), ErrorCategory::FORMAT,
               {"unknown value type 4294967295"});
  expect_error(patched(base.bytes, base.floats_elem_type, uint32_t{13}), ErrorCategory::FORMAT,
               {"test.floats", "unknown array element type 13"});
  expect_error(patched(base.bytes, base.floats_elem_type, uint32_t{9}), ErrorCategory::UNSUPPORTED,
               {"test.floats", "nested arrays"});
  // Lengths near 2^62: string lengths, a float array whose byte size wraps (2^62 * 4 = 2^64), string array counts.
  expect_error(patched(base.bytes, base.arch_key_len, k2p62), ErrorCategory::FORMAT, {"length 4611686018427387904"});
  expect_error(patched(base.bytes, base.arch_key_len, kU64Max), ErrorCategory::FORMAT, {"18446744073709551615"});
  expect_error(patched(base.bytes, base.arch_value_len, k2p62 + 3), ErrorCategory::FORMAT,
               {"general.architecture", "4611686018427387907"});
  expect_error(patched(base.bytes, base.floats_count, k2p62), ErrorCategory::FORMAT,
               {"test.floats", "4611686018427387904", "2^64 or more"});
  expect_error(patched(base.bytes, base.floats_count, k2p62 - 1), ErrorCategory::FORMAT,
               {"test.floats", "4611686018427387903"});
  expect_error(patched(base.bytes, base.tokens_count, k2p62), ErrorCategory::FORMAT,
               {"tokenizer.ggml.tokens", "string array count 4611686018427387904"});
  expect_error(patched(base.bytes, base.tokens_count, uint64_t{7}), ErrorCategory::FORMAT, {"tokenizer.ggml.tokens"});
  expect_error(patched(base.bytes, base.entry[0].start, k2p62), ErrorCategory::FORMAT,
               {"name of tensor #0", "4611686018427387904"});
  // Duplicate keys.
  Variant dup;
  dup.last_key = "general.architecture";
  expect_error(make_base(dup).bytes, ErrorCategory::FORMAT,
               {"duplicate key 'general.architecture' (kv pair #4)", "kv pair #0"});
}

TEST_CASE("gguf bad input: general.alignment") {
  const Base base = make_base();
  for (uint32_t a : {0u, 3u, 48u, 0x80000001u}) {
    CAPTURE(a);
    expect_error(patched(base.bytes, base.align_value, a), ErrorCategory::FORMAT,
                 {"general.alignment", "alignment " + std::to_string(a) + " is not a power of two"});
  }
  expect_error(patched(base.bytes, base.align_type, uint32_t{5}), ErrorCategory::FORMAT,
               {"general.alignment", "INT32", "expected UINT32"});
  // 128: the data section moves to the next multiple of 128 and offset 192 is no longer aligned.
  expect_error(patched(base.bytes, base.align_value, uint32_t{128}), ErrorCategory::FORMAT, {"tensor '"});
  // 16 is a valid smaller alignment: the table ends before the padded data start, so the file stays readable
  // unless the data start moves. Either outcome is fine; it must not crash.
  try {
    (void)walk(GgufFile::from_memory(patched(base.bytes, base.align_value, uint32_t{16}), kName));
  } catch (const Error&) {
  }
}

TEST_CASE("gguf bad input: tensor table") {
  const Base base = make_base();
  const Entry& t0 = base.entry[0];  // token_embd.weight, Q4_0 [64, 3]
  const Entry& t1 = base.entry[1];  // blk.0.attn_norm.weight, F32 [13]
  const Entry& t2 = base.entry[2];  // blk.0.ffn_down.weight, Q4_K [256, 2]

  for (uint32_t id : {4u, 5u, 1000u}) {
    CAPTURE(id);
    expect_error(patched(base.bytes, t1.type, id), ErrorCategory::UNSUPPORTED,
                 {"tensor 'blk.0.attn_norm.weight' (index 1)", "unknown GGML type id " + std::to_string(id)});
  }
  expect_error(patched(base.bytes, t1.type, uint32_t{4}), ErrorCategory::UNSUPPORTED, {"removed"});

  // A type ferry cannot dequantize is still listed, with its size checked.
  const GgufFile iq = GgufFile::from_memory(patched(base.bytes, t2.type, uint32_t{16}), kName);
  CHECK(iq.tensors()[2].type == GgmlType::IQ2_XXS);
  CHECK(iq.tensors()[2].n_bytes == 2 * 66);
  expect_error(patched(base.bytes, t2.type, uint32_t{15}), ErrorCategory::FORMAT,  // Q8_K: 584 bytes, too big
               {"blk.0.ffn_down.weight", "past the end"});

  for (uint32_t n : {0u, 5u, 0xffffffffu}) {
    CAPTURE(n);
    expect_error(patched(base.bytes, t0.n_dims, n), ErrorCategory::FORMAT,
                 {"token_embd.weight", "n_dims " + std::to_string(n) + " is outside 1..4"});
  }
  expect_error(patched(base.bytes, t0.ne[1], kU64Max), ErrorCategory::FORMAT,
               {"token_embd.weight", "ne[1] = -1 is negative"});
  expect_error(patched(base.bytes, t0.ne[0], uint64_t{1} << 63), ErrorCategory::FORMAT, {"ne[0]", "negative"});
  // [2^33, 2^31] multiplies to 2^64; [2^32, 2^31] to 2^63, which does not fit int64.
  expect_error(patched(patched(base.bytes, t0.ne[0], uint64_t{1} << 33), t0.ne[1], uint64_t{1} << 31),
               ErrorCategory::FORMAT, {"token_embd.weight", "8589934592, 2147483648", "overflow"});
  expect_error(patched(patched(base.bytes, t0.ne[0], uint64_t{1} << 32), t0.ne[1], uint64_t{1} << 31),
               ErrorCategory::FORMAT, {"token_embd.weight", "overflow"});
  // 2^62 F32 elements fit int64 but their 2^64 bytes do not fit 64 bits.
  expect_error(patched(base.bytes, t1.ne[0], k2p62), ErrorCategory::FORMAT,
               {"blk.0.attn_norm.weight", "byte size", "overflows"});
  // Large but representable: must be refused against the file size, not allocated.
  expect_error(patched(base.bytes, t1.ne[0], uint64_t{1} << 40), ErrorCategory::FORMAT,
               {"blk.0.attn_norm.weight", "past the end"});

  expect_error(patched(base.bytes, t0.ne[0], uint64_t{48}), ErrorCategory::FORMAT,
               {"token_embd.weight", "Q4_0", "ne[0] = 48", "block size 32"});
  expect_error(patched(base.bytes, t2.ne[0], uint64_t{128}), ErrorCategory::FORMAT,
               {"blk.0.ffn_down.weight", "Q4_K", "ne[0] = 128", "block size 256"});

  Variant dup;
  dup.last_tensor = "token_embd.weight";
  expect_error(make_base(dup).bytes, ErrorCategory::FORMAT,
               {"tensor 'token_embd.weight' (index 2): duplicate tensor name", "index 0"});
}

TEST_CASE("gguf bad input: tensor offsets") {
  const Base base = make_base();
  const Entry& t1 = base.entry[1];
  const Entry& t2 = base.entry[2];
  expect_error(patched(base.bytes, t1.offset, uint64_t{132}), ErrorCategory::FORMAT,
               {"tensor 'blk.0.attn_norm.weight' (index 1): offset 132 is not a multiple of the alignment 32",
                "(tensor table entry at byte " + std::to_string(t1.start) + ")"});
  expect_error(patched(base.bytes, t2.offset, uint64_t{4096}), ErrorCategory::FORMAT,
               {"blk.0.ffn_down.weight", "past the end of the file"});
  expect_error(patched(base.bytes, t2.offset, kU64Max - 31), ErrorCategory::FORMAT,
               {"blk.0.ffn_down.weight", "wraps around 2^64"});
  // The start fits in 64 bits but start + size wraps.
  const uint64_t near_end = (kU64Max - base.data_offset) / 32 * 32;
  expect_error(patched(base.bytes, t2.offset, near_end), ErrorCategory::FORMAT, {"wraps around 2^64"});
  // Overlaps: the same offset, and a start inside the previous tensor.
  expect_error(patched(base.bytes, t1.offset, uint64_t{0}), ErrorCategory::FORMAT,
               {"'token_embd.weight'", "'blk.0.attn_norm.weight'", "overlap"});
  expect_error(patched(base.bytes, t1.offset, uint64_t{96}), ErrorCategory::FORMAT,
               {"'token_embd.weight' (index 0, bytes [" + std::to_string(base.data_offset) + ", ", "overlap"});
  // Out of table order but disjoint is fine: 52 bytes at 0, 108 bytes at 64, 288 at 192.
  const auto swapped = patched(patched(base.bytes, t1.offset, uint64_t{0}), base.entry[0].offset, uint64_t{64});
  const GgufFile f = GgufFile::from_memory(swapped, kName);
  CHECK(f.tensors()[0].file_offset == base.data_offset + 64);
  CHECK(f.tensors()[1].file_offset == base.data_offset);
  // Moving the first tensor to 96 makes it run into the third (at 192): 96 + 108 = 204.
  expect_error(patched(swapped, base.entry[0].offset, uint64_t{96}), ErrorCategory::FORMAT,
               {"'token_embd.weight' (index 0", "'blk.0.ffn_down.weight' (index 2", "overlap"});
}

TEST_CASE("gguf bad input: a broken file on disk is refused by open() with its path") {
  const Base base = make_base();
  ferry::test::TempDir dir;
  const auto good = dir.path() / "good.gguf";
  const auto bad = dir.path() / "model.gguf";
  write_file_bytes(good, base.bytes);
  write_file_bytes(bad, patched(base.bytes, base.entry[1].offset, uint64_t{123}));
  const GgufFile f = GgufFile::open(good);
  CHECK(std::memcmp(f.tensor_data(f.tensor("blk.0.attn_norm.weight")).data(), base.tensors[1].data.data(), 52) == 0);
  try {
    (void)GgufFile::open(bad);
    FAIL("accepted a misaligned offset");
  } catch (const Error& e) {
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(e.category() == ErrorCategory::FORMAT);
    CHECK(msg.find(bad.string() + ": tensor 'blk.0.attn_norm.weight' (index 1): offset 123 is not a multiple of the "
                                  "alignment 32 (tensor table entry at byte ") == 0);
  }
}

TEST_CASE("gguf bad input: random corruption never crashes") {
  const Base base = make_base();
  std::mt19937_64 rng(test::test_seed(77));
  size_t accepted = 0, refused = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto bytes = base.bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      // Mostly the header, metadata and table, where the structure is.
      const size_t limit = (rng() % 4 == 0) ? bytes.size() : base.data_offset;
      const size_t pos = rng() % limit;
      bytes[pos] = (rng() % 2) ? static_cast<std::byte>(rng() & 0xff) : (bytes[pos] ^ std::byte{0x80});
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    try {
      const GgufFile f = GgufFile::from_memory(bytes, kName);
      (void)walk(f);
      ++accepted;
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.rfind(std::string(kName) + ": ", 0) == 0);
      ++refused;
    }
  }
  // Both outcomes occur: flips in string contents or tensor data are harmless, flips in sizes are not.
  CHECK(accepted > 100);
  CHECK(refused > 100);
}
