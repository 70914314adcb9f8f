// GgufWriter -> GgufFile -> GgufWriter::copy_of: every metadata type and a spread of tensor types and shapes survive
// the round trip exactly, the layout follows the alignment, typed access converts or refuses as documented, and
// files appear atomically.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/mapped_file.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"
#include "support/text.hpp"

using namespace ferry;
using ferry::test::read_file_bytes;
using ferry::test::TempDir;

namespace {

std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
  return v;
}

template <class T>
std::vector<T> random_ints(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng());
  return v;
}

struct TensorSpec {
  std::string name;
  GgmlType type;
  std::vector<int64_t> ne;
  std::vector<std::byte> data;
};

uint64_t expected_bytes(GgmlType type, const std::vector<int64_t>& ne) {
  uint64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) rows *= static_cast<uint64_t>(ne[d]);
  return row_bytes(type, ne[0]) * rows;
}

// Odd shapes, every rank, quantized and plain types, a type ferry cannot dequantize, and an empty tensor.
// The names of the entries of `dir`, sorted and joined by spaces (a string, so a failed CHECK prints it).
std::string dir_listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string listing;
  for (const auto& n : names) listing += (listing.empty() ? "" : " ") + n;
  return listing;
}

std::vector<TensorSpec> make_tensors(uint64_t seed) {
  std::vector<TensorSpec> specs = {
      {"token_embd.weight", GgmlType::Q4_0, {96, 7}, {}},
      {"blk.0.attn_norm.weight", GgmlType::F32, {13}, {}},
      {"blk.0.attn_q.weight", GgmlType::Q4_K, {256, 3, 2}, {}},
      {"blk.0.ffn_down.weight", GgmlType::Q6_K, {512, 5}, {}},
      {"blk.0.ffn_up.weight", GgmlType::IQ2_XXS, {256, 3}, {}},
      {"blk.0.odd.bias", GgmlType::F16, {11, 1, 3, 2}, {}},
      {"blk.0.empty", GgmlType::F32, {0, 4}, {}},
      {"blk.0.ids", GgmlType::I8, {5}, {}},
      {"output.weight", GgmlType::Q8_0, {64, 9}, {}},
  };
  for (size_t i = 0; i < specs.size(); ++i)
    specs[i].data = random_bytes(expected_bytes(specs[i].type, specs[i].ne), seed + i);
  return specs;
}

// Every value type, extreme values, NaN payloads, non-ASCII and embedded NUL strings, empty arrays.
std::vector<std::pair<std::string, GgufValue>> make_metadata(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::pair<std::string, GgufValue>> kv;
  kv.emplace_back("general.architecture", GgufValue::string("llama"));
  kv.emplace_back("general.name", GgufValue::string(std::string("h\xc3\xa9llo\0world", 12)));
  kv.emplace_back("test.empty_string", GgufValue::string(""));
  kv.emplace_back("test.u8", GgufValue::scalar(static_cast<uint8_t>(rng())));
  kv.emplace_back("test.i8", GgufValue::scalar(std::numeric_limits<int8_t>::min()));
  kv.emplace_back("test.u16", GgufValue::scalar(static_cast<uint16_t>(rng())));
  kv.emplace_back("test.i16", GgufValue::scalar(static_cast<int16_t>(-12345)));
  kv.emplace_back("test.u32", GgufValue::scalar(static_cast<uint32_t>(rng())));
  kv.emplace_back("test.i32", GgufValue::scalar(static_cast<int32_t>(-1)));
  kv.emplace_back("test.u64", GgufValue::scalar(std::numeric_limits<uint64_t>::max()));
  kv.emplace_back("test.i64", GgufValue::scalar(std::numeric_limits<int64_t>::min()));
  kv.emplace_back("test.f32", GgufValue::scalar(std::bit_cast<float>(0x7fc01234u)));  // NaN with a payload
  kv.emplace_back("test.f64", GgufValue::scalar(-0.0));
  kv.emplace_back("test.bool_true", GgufValue::scalar(true));
  kv.emplace_back("test.bool_false", GgufValue::scalar(false));
  kv.emplace_back("test.arr_u8", GgufValue::array(random_ints<uint8_t>(17, seed + 1)));
  kv.emplace_back("test.arr_i8", GgufValue::array(random_ints<int8_t>(3, seed + 2)));
  kv.emplace_back("test.arr_u16", GgufValue::array(random_ints<uint16_t>(5, seed + 3)));
  kv.emplace_back("test.arr_i16", GgufValue::array(std::vector<int16_t>{5, -2, 300}));
  kv.emplace_back("test.arr_u32", GgufValue::array(random_ints<uint32_t>(9, seed + 4)));
  kv.emplace_back("test.arr_i32", GgufValue::array(random_ints<int32_t>(31, seed + 5)));
  kv.emplace_back("test.arr_u64", GgufValue::array(random_ints<uint64_t>(2, seed + 6)));
  kv.emplace_back("test.arr_i64", GgufValue::array(random_ints<int64_t>(4, seed + 7)));
  kv.emplace_back("test.arr_f32", GgufValue::array(ferry::test::random_floats(23, seed + 8)));
  kv.emplace_back("test.arr_f64", GgufValue::array(std::vector<double>{1.5, -2.25, 1e300}));
  kv.emplace_back("test.arr_bool", GgufValue::array(std::vector<bool>{true, false, false, true}));
  kv.emplace_back("test.arr_empty", GgufValue::array(std::vector<float>{}));
  kv.emplace_back("tokenizer.ggml.tokens", GgufValue::string_array({"<s>", "", "\xe2\x96\x81the", "</s>"}));
  kv.emplace_back("test.arr_str_empty", GgufValue::string_array({}));
  return kv;
}

GgufWriter make_writer(uint64_t alignment, const std::vector<std::pair<std::string, GgufValue>>& kv,
                       const std::vector<TensorSpec>& tensors) {
  GgufWriter w(alignment);
  for (const auto& [k, v] : kv) w.set(k, v);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.ne, std::span<const std::byte>(t.data));
  return w;
}

void check_file_matches(const GgufFile& f, uint64_t alignment, const std::vector<std::pair<std::string, GgufValue>>& kv,
                        const std::vector<TensorSpec>& tensors) {
  CHECK(f.version() == 3);
  CHECK(f.alignment() == alignment);
  CHECK(f.data_offset() % alignment == 0);
  // The writer adds general.alignment in front when the alignment is not the default.
  const size_t extra = alignment != kGgufDefaultAlignment ? 1 : 0;
  REQUIRE(f.metadata().size() == kv.size() + extra);
  if (extra) {
    CHECK(f.metadata()[0].key == "general.alignment");
    CHECK(f.metadata()[0].value == GgufValue::scalar(static_cast<uint32_t>(alignment)));
  }
  for (size_t i = 0; i < kv.size(); ++i) {
    CAPTURE(kv[i].first);
    CHECK(f.metadata()[i + extra].key == kv[i].first);
    CHECK(f.metadata()[i + extra].value == kv[i].second);
  }
  REQUIRE(f.tensors().size() == tensors.size());
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GgufTensorInfo& info = f.tensors()[i];
    CAPTURE(info.name);
    CHECK(info.name == tensors[i].name);
    CHECK(info.type == tensors[i].type);
    CHECK(info.ne == tensors[i].ne);
    CHECK(info.n_bytes == tensors[i].data.size());
    CHECK(info.offset == expected_offset);
    CHECK(info.file_offset == f.data_offset() + info.offset);
    CHECK(&f.tensor(info.name) == &info);
    const auto data = f.tensor_data(info);
    REQUIRE(data.size() == tensors[i].data.size());
    CHECK(std::equal(data.begin(), data.end(), tensors[i].data.begin()));
    expected_offset += (info.n_bytes + alignment - 1) / alignment * alignment;
  }
  // The canonical layout pads the last tensor too.
  CHECK(f.file_size() == f.data_offset() + expected_offset);
}

}  // namespace

TEST_CASE("gguf: every metadata type and a mix of tensors round trip through writer, reader and copy_of") {
  for (uint64_t alignment : {32u, 1u, 8u, 64u, 256u}) {
    CAPTURE(alignment);
    TempDir dir;
    const auto kv = make_metadata(test::test_seed(1000 + alignment));
    const auto tensors = make_tensors(test::test_seed(2000 + alignment));
    const auto first = dir.path() / "first.gguf";
    const auto second = dir.path() / "second.gguf";

    size_t calls = 0;
    uint64_t last_done = 0, last_total = 0;
    make_writer(alignment, kv, tensors).write(first, [&](size_t done, size_t total, uint64_t bytes, uint64_t all) {
      ++calls;
      CHECK(done == calls);
      CHECK(total == tensors.size());
      CHECK(bytes >= last_done);
      last_done = bytes;
      last_total = all;
    });
    CHECK(calls == tensors.size());
    CHECK(last_done == last_total);

    const GgufFile f = GgufFile::open(first);
    CHECK(f.name() == first.string());
    check_file_matches(f, alignment, kv, tensors);

    GgufWriter::copy_of(f).write(second);
    CHECK(read_file_bytes(first) == read_file_bytes(second));

    // The same bytes parsed from memory give the same result.
    const auto bytes = read_file_bytes(first);
    const GgufFile m = GgufFile::from_memory(bytes, "in-memory");
    check_file_matches(m, alignment, kv, tensors);
  }
}

TEST_CASE("gguf: typed metadata access converts when the value fits and refuses otherwise") {
  TempDir dir;
  const auto path = dir.path() / "typed.gguf";
  GgufWriter w;
  w.set("a.u32", GgufValue::scalar(uint32_t{4000000000u}));
  w.set("a.i32", GgufValue::scalar(int32_t{-1}));
  w.set("a.u64", GgufValue::scalar(uint64_t{1} << 40));
  w.set("a.f32", GgufValue::scalar(1.5f));
  w.set("a.f64", GgufValue::scalar(0.1));
  w.set("a.bool", GgufValue::scalar(true));
  w.set("a.str", GgufValue::string("llama"));
  w.set("a.arr_i16", GgufValue::array(std::vector<int16_t>{7, 300, -4}));
  w.set("a.arr_u32", GgufValue::array(std::vector<uint32_t>{1, 2, 3}));
  w.set("a.strs", GgufValue::string_array({"x", "y"}));
  w.set("a.i32", GgufValue::scalar(int32_t{-7}));  // replacing keeps the position
  w.write(path);
  const GgufFile f = GgufFile::open(path);
  REQUIRE(f.metadata().size() == 10);
  CHECK(f.metadata()[1].key == "a.i32");

  CHECK(f.get<uint32_t>("a.u32") == 4000000000u);
  CHECK(f.get<int64_t>("a.u32") == 4000000000);
  CHECK(f.get<uint64_t>("a.u32") == 4000000000u);
  CHECK(f.get<int32_t>("a.i32") == -7);
  CHECK(f.get<int8_t>("a.i32") == -7);
  CHECK(f.get<int64_t>("a.u64") == (int64_t{1} << 40));
  CHECK(f.get<float>("a.f32") == 1.5f);
  CHECK(f.get<double>("a.f32") == 1.5);
  CHECK(f.get<double>("a.f64") == 0.1);
  CHECK(f.get<bool>("a.bool"));
  CHECK(f.get_string("a.str") == "llama");
  CHECK(f.get_array<int32_t>("a.arr_i16") == std::vector<int32_t>{7, 300, -4});
  CHECK(f.get_array<uint64_t>("a.arr_u32") == std::vector<uint64_t>{1, 2, 3});
  CHECK(f.get_string_array("a.strs") == std::vector<std::string>{"x", "y"});
  CHECK(f.get_optional<uint32_t>("a.missing") == std::nullopt);
  CHECK(f.get_optional<uint32_t>("a.u32") == 4000000000u);
  CHECK(f.at("a.arr_i16").array_size() == 3);

  const auto expect = [&](auto&& call, ErrorCategory category, std::vector<std::string> parts) {
    try {
      call();
      FAIL("no error thrown");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(e.category() == category);
      CHECK(msg.find(path.string()) != std::string::npos);
      for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
  };
  expect([&] { (void)f.get<uint32_t>("a.missing"); }, ErrorCategory::NOT_FOUND, {"'a.missing'", "not found"});
  expect([&] { (void)f.get_string("a.missing"); }, ErrorCategory::NOT_FOUND, {"'a.missing'"});
  expect([&] { (void)f.tensor("nope.weight"); }, ErrorCategory::NOT_FOUND, {"'nope.weight'"});
  expect([&] { (void)f.get<uint32_t>("a.i32"); }, ErrorCategory::FORMAT, {"'a.i32'", "-7", "INT32", "uint32"});
  expect([&] { (void)f.get<int32_t>("a.u32"); }, ErrorCategory::FORMAT, {"4000000000", "int32"});
  expect([&] { (void)f.get<uint16_t>("a.u64"); }, ErrorCategory::FORMAT, {"1099511627776"});
  expect([&] { (void)f.get<uint32_t>("a.str"); }, ErrorCategory::FORMAT, {"'a.str'", "STRING", "uint32"});
  expect([&] { (void)f.get<float>("a.u32"); }, ErrorCategory::FORMAT, {"UINT32", "float"});
  expect([&] { (void)f.get<int32_t>("a.f32"); }, ErrorCategory::FORMAT, {"FLOAT32", "int32"});
  expect([&] { (void)f.get<bool>("a.u32"); }, ErrorCategory::FORMAT, {"UINT32", "bool"});
  expect([&] { (void)f.get_string("a.u32"); }, ErrorCategory::FORMAT, {"UINT32", "STRING"});
  expect([&] { (void)f.get<uint32_t>("a.arr_u32"); }, ErrorCategory::FORMAT, {"ARRAY of UINT32"});
  expect([&] { (void)f.get_array<uint8_t>("a.arr_i16"); }, ErrorCategory::FORMAT, {"element 1", "300", "uint8"});
  expect([&] { (void)f.get_array<uint32_t>("a.arr_i16"); }, ErrorCategory::FORMAT, {"element 2", "-4"});
  expect([&] { (void)f.get_array<uint32_t>("a.strs"); }, ErrorCategory::FORMAT, {"ARRAY of STRING"});
  expect([&] { (void)f.get_string_array("a.arr_u32"); }, ErrorCategory::FORMAT, {"ARRAY of UINT32", "STRING"});
  expect([&] { (void)f.get_array<float>("a.str"); }, ErrorCategory::FORMAT, {"STRING", "ARRAY"});
}

TEST_CASE("gguf: GgufValue equality is exact and raw constructors check their sizes") {
  const float nan_a = std::bit_cast<float>(0x7fc00001u), nan_b = std::bit_cast<float>(0x7fc00002u);
  CHECK(GgufValue::scalar(nan_a) == GgufValue::scalar(nan_a));
  CHECK_FALSE(GgufValue::scalar(nan_a) == GgufValue::scalar(nan_b));
  CHECK_FALSE(GgufValue::scalar(0.0f) == GgufValue::scalar(-0.0f));
  CHECK_FALSE(GgufValue::scalar(uint32_t{1}) == GgufValue::scalar(int32_t{1}));  // the type is part of the value
  CHECK_FALSE(GgufValue::array(std::vector<float>{}) == GgufValue::array(std::vector<int32_t>{}));
  CHECK(GgufValue::raw_array(GgufValueType::UINT16, 2, {1, 0, 2, 0}) == GgufValue::array(std::vector<uint16_t>{1, 2}));
  CHECK(GgufValue::raw_scalar(GgufValueType::INT8, 0xff) == GgufValue::scalar(int8_t{-1}));
  CHECK(GgufValue::raw_scalar(GgufValueType::BOOL, 2).as<bool>("x"));
  CHECK_THROWS_AS(GgufValue::raw_array(GgufValueType::UINT16, 3, {1, 0, 2, 0}), Error);
  CHECK_THROWS_AS(GgufValue::raw_array(GgufValueType::STRING, 0, {}), Error);
  CHECK_THROWS_AS(GgufValue::raw_scalar(GgufValueType::UINT8, 256), Error);
  CHECK(value_type_name(GgufValueType::FLOAT64) == "FLOAT64");
  CHECK(value_type_name(77) == "type 77");
}

TEST_CASE("gguf: the writer refuses bad alignments and bad tensors") {
  for (uint64_t a : {uint64_t{0}, uint64_t{3}, uint64_t{48}, uint64_t{1} << 33}) {
    CAPTURE(a);
    CHECK_THROWS_AS(GgufWriter{a}, Error);
  }
  GgufWriter w;
  const auto data = random_bytes(4 * 18, test::test_seed(7));
  w.add_tensor("a", GgmlType::Q4_0, {64, 2}, std::span<const std::byte>(data));
  const auto expect = [&](auto&& call, std::vector<std::string> parts) {
    try {
      call();
      FAIL("no error thrown");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(e.category() == ErrorCategory::INVALID_ARGUMENT);
      for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    }
  };
  const auto fill = [](std::span<std::byte>) {};
  expect([&] { w.add_tensor("a", GgmlType::F32, {4}, fill); }, {"'a'", "duplicate"});
  expect([&] { w.add_tensor("b", GgmlType::Q4_0, {48, 2}, fill); }, {"'b'", "48", "Q4_0", "32"});
  expect([&] { w.add_tensor("c", GgmlType::F32, {}, fill); }, {"'c'", "0 dimensions"});
  expect([&] { w.add_tensor("d", GgmlType::F32, {1, 1, 1, 1, 1}, fill); }, {"'d'", "5 dimensions"});
  expect([&] { w.add_tensor("e", GgmlType::F32, {4, -2}, fill); }, {"'e'", "negative"});
  expect([&] { w.add_tensor("f", GgmlType::F32, {int64_t{1} << 32, int64_t{1} << 32}, fill); }, {"'f'", "overflow"});
  expect([&] { w.add_tensor("g", static_cast<GgmlType>(4), {4}, fill); }, {"'g'", "type id 4"});
  expect([&] { w.add_tensor("h", GgmlType::F32, {4}, GgufWriter::TensorFill{}); }, {"'h'"});
  expect([&] { w.add_tensor("i", GgmlType::Q4_0, {64, 3}, std::span<const std::byte>(data)); }, {"'i'", "72", "108"});

  // general.alignment must agree with the writer's alignment and be a UINT32.
  TempDir dir;
  GgufWriter w64(64);
  w64.set("general.alignment", GgufValue::scalar(uint32_t{32}));
  expect([&] { w64.write(dir.path() / "x.gguf"); }, {"general.alignment", "64"});
  w64.set("general.alignment", GgufValue::scalar(int32_t{64}));
  expect([&] { w64.write(dir.path() / "x.gguf"); }, {"general.alignment", "INT32"});
  w64.set("general.alignment", GgufValue::scalar(uint32_t{64}));
  w64.add_tensor("t", GgmlType::F32, {3}, std::span<const std::byte>(data.data(), 12));
  w64.write(dir.path() / "x.gguf");
  const GgufFile f = GgufFile::open(dir.path() / "x.gguf");
  CHECK(f.alignment() == 64);
  CHECK(f.metadata().size() == 1);  // the caller's key, not a second one
  // The refused writes left nothing, and the successful one left no temporary (".x.gguf.tmp.PID.N") beside its file.
  CHECK(dir_listing(dir.path()) == "x.gguf");
}

TEST_CASE("gguf: files appear atomically and failures leave nothing behind") {
  TempDir dir;
  const auto path = dir.path() / "out.bin";
  const auto a = random_bytes(1000, test::test_seed(1)), b = random_bytes(37, test::test_seed(2));
  write_file_atomically(path, a);
  CHECK(read_file_bytes(path) == a);
  write_file_atomically(path, b);  // replaces
  CHECK(read_file_bytes(path) == b);
  write_file_atomically(dir.path() / "empty.bin", {});
  CHECK(std::filesystem::file_size(dir.path() / "empty.bin") == 0);

  CHECK_THROWS_AS(write_file_atomically(dir.path() / "missing-dir" / "x.bin", a), Error);
  try {
    write_file_atomically(dir.path() / "missing-dir" / "x.bin", a);
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::IO);
    CHECK(std::string(e.what()).find("missing-dir") != std::string::npos);
  }

  // A tensor callback that throws: the exception reaches the caller, the old file stays, no temporary remains.
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llama"));
  w.add_tensor("t", GgmlType::F32, {8}, [](std::span<std::byte>) { throw std::runtime_error("fill failed"); });
  CHECK_THROWS_WITH_AS(w.write(path), "fill failed", std::runtime_error);
  CHECK(read_file_bytes(path) == b);
  CHECK(dir_listing(dir.path()) == "empty.bin out.bin");
}

TEST_CASE("gguf: files without tensors, empty files and unreadable paths") {
  TempDir dir;
  GgufWriter w(128);
  w.set("general.architecture", GgufValue::string("flux"));
  w.write(dir.path() / "meta.gguf");
  const GgufFile f = GgufFile::open(dir.path() / "meta.gguf");
  CHECK(f.tensors().empty());
  CHECK(f.get_string("general.architecture") == "flux");
  CHECK(f.file_size() % 128 == 0);

  // Metadata-only files from writers that do not pad the end are valid too.
  auto bytes = read_file_bytes(dir.path() / "meta.gguf");
  size_t end = bytes.size();
  while (end > 0 && bytes[end - 1] == std::byte{0}) --end;
  bytes.resize(end);
  CHECK(GgufFile::from_memory(bytes, "unpadded").metadata().size() == 2);

  {
    std::ofstream(dir.path() / "empty.gguf").flush();
    MappedFile empty(dir.path() / "empty.gguf");
    CHECK(empty.size() == 0);
    CHECK(empty.bytes().empty());
    MappedFile moved(std::move(empty));
    CHECK(moved.size() == 0);
  }
  MappedFile mapped(dir.path() / "meta.gguf");
  const auto* data = mapped.bytes().data();
  MappedFile other(dir.path() / "empty.gguf");
  other = std::move(mapped);
  CHECK(other.bytes().data() == data);
  CHECK(other.size() == f.file_size());

  try {
    (void)GgufFile::open(dir.path() / "empty.gguf");
    FAIL("empty file accepted");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::FORMAT);
    CHECK(std::string(e.what()).find("truncated") != std::string::npos);
  }
  for (const auto& p : {dir.path() / "does-not-exist.gguf", dir.path()}) {
    try {
      (void)GgufFile::open(p);
      FAIL("opened " << p);
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::IO);
      CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
    }
  }

  // A moved GgufFile keeps its mapping: spans taken before the move stay valid.
  GgufWriter wt;
  const auto payload = random_bytes(40, test::test_seed(9));
  wt.add_tensor("w", GgmlType::F32, {10}, std::span<const std::byte>(payload));
  wt.write(dir.path() / "t.gguf");
  GgufFile a = GgufFile::open(dir.path() / "t.gguf");
  const auto span = a.tensor_data(a.tensor("w"));
  GgufFile b = std::move(a);
  CHECK(std::memcmp(span.data(), payload.data(), payload.size()) == 0);
  CHECK(b.tensor_data(b.tensor("w")).data() == span.data());
}
