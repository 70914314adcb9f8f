// ferry_interop_writer: writes GGUF files with ferry's GgufWriter for check_interop.py, which reads them back with
// the Python `gguf` package (an independent reader) and compares with what this program meant to write.
//
//   ferry_interop_writer write OUT.gguf ALIGNMENT SIDECAR_DIR
//       A file with metadata of every value type (edge values: integer limits, 2^53 +- 1, -0.0, subnormals, inf,
//       NaN, empty arrays, non-ASCII strings) and one tensor of every type ferry can quantize (random weights through
//       ferry::ref::quantize), in odd shapes of 1 to 4 dimensions. SIDECAR_DIR/expected.json lists the intended
//       metadata (integers as decimal strings, floats as their bit patterns, so nothing is rounded on the way) and
//       tensors; SIDECAR_DIR/<index>.bin holds each tensor's intended bytes.
//   ferry_interop_writer copy IN.gguf OUT.gguf
//       GgufWriter::copy_of(GgufFile::open(IN)).write(OUT): check_interop.py expects OUT identical to IN.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "support/random.hpp"

namespace {

using Json = nlohmann::ordered_json;

// Collects metadata for the writer and, beside it, the sidecar description of the same values.
struct Expected {
  ferry::GgufWriter& writer;
  Json metadata = Json::array();

  template <class T>
  static std::string encode(T v) {
    if constexpr (std::is_same_v<T, float>)
      return std::to_string(std::bit_cast<uint32_t>(v));
    else if constexpr (std::is_same_v<T, double>)
      return std::to_string(std::bit_cast<uint64_t>(v));
    else if constexpr (std::is_same_v<T, bool>)
      return v ? "1" : "0";
    else
      return std::to_string(v);
  }

  template <class T>
  void scalar(const std::string& key, T v) {
    const ferry::GgufValue value = ferry::GgufValue::scalar(v);
    writer.set(key, value);
    metadata.push_back({{"key", key}, {"type", ferry::value_type_name(value.type())}, {"value", encode(v)}});
  }
  void string(const std::string& key, const std::string& v) {
    writer.set(key, ferry::GgufValue::string(v));
    metadata.push_back({{"key", key}, {"type", "STRING"}, {"value", v}});
  }
  template <class T>
  void array(const std::string& key, const std::vector<T>& values) {
    const ferry::GgufValue value = ferry::GgufValue::array(values);
    writer.set(key, value);
    Json encoded = Json::array();
    for (T v : values) encoded.push_back(encode(v));
    metadata.push_back({{"key", key},
                        {"type", "ARRAY"},
                        {"element_type", ferry::value_type_name(value.array_type())},
                        {"value", encoded}});
  }
  void string_array(const std::string& key, const std::vector<std::string>& values) {
    writer.set(key, ferry::GgufValue::string_array(values));
    metadata.push_back({{"key", key}, {"type", "ARRAY"}, {"element_type", "STRING"}, {"value", values}});
  }
};

void add_metadata(Expected& e) {
  using I64 = std::numeric_limits<int64_t>;
  constexpr uint64_t k2p53 = uint64_t{1} << 53;
  e.string("general.architecture", "llama");
  e.string("general.name", "ferry interop \xe2\x9c\x93 \"quoted\"\n\ttabbed");
  e.scalar<uint32_t>("general.file_type", 15);
  e.scalar<uint32_t>("llama.block_count", 2);
  e.scalar<uint32_t>("llama.context_length", 4096);
  e.scalar<uint8_t>("test.u8", 255);
  e.scalar<int8_t>("test.i8", -128);
  e.scalar<uint16_t>("test.u16", 65535);
  e.scalar<int16_t>("test.i16", -32768);
  e.scalar<uint32_t>("test.u32", 4294967295u);
  e.scalar<int32_t>("test.i32", std::numeric_limits<int32_t>::min());
  e.scalar<float>("test.f32", 0.1f);
  e.scalar<float>("test.f32_negative_zero", -0.0f);
  e.scalar<float>("test.f32_subnormal", 1e-40f);
  e.scalar<float>("test.f32_inf", std::numeric_limits<float>::infinity());
  e.scalar<float>("test.f32_nan", std::numeric_limits<float>::quiet_NaN());
  e.scalar<bool>("test.bool_true", true);
  e.scalar<bool>("test.bool_false", false);
  e.string("test.string_empty", "");
  e.string("test.string_long", std::string(300, 'x') + "\xc3\xbc");
  e.scalar<uint64_t>("test.u64_max", std::numeric_limits<uint64_t>::max());
  e.scalar<uint64_t>("test.u64_2p53", k2p53);
  e.scalar<uint64_t>("test.u64_2p53_plus_1", k2p53 + 1);
  e.scalar<int64_t>("test.i64_min", I64::min());
  e.scalar<int64_t>("test.i64_minus_2p53", -static_cast<int64_t>(k2p53));
  e.scalar<int64_t>("test.i64_minus_2p53_minus_1", -static_cast<int64_t>(k2p53) - 1);
  e.scalar<double>("test.f64", 0.1);
  e.scalar<double>("test.f64_large", -1e308);
  e.scalar<double>("test.f64_subnormal", 5e-324);
  e.array<uint8_t>("test.array_u8", {0, 1, 127, 128, 255});
  e.array<int8_t>("test.array_i8", {-128, -1, 0, 127});
  e.array<uint16_t>("test.array_u16", {0, 1, 65535});
  e.array<int16_t>("test.array_i16", {-32768, 0, 32767});
  e.array<uint32_t>("test.array_u32", {0, 7, 4294967295u});
  e.array<int32_t>("test.array_i32", {std::numeric_limits<int32_t>::min(), -1, 2147483647});
  e.array<uint64_t>("test.array_u64", {0, k2p53, k2p53 + 1, std::numeric_limits<uint64_t>::max()});
  e.array<int64_t>("test.array_i64", {I64::min(), -static_cast<int64_t>(k2p53) - 1, -1, I64::max()});
  e.array<float>("test.array_f32", ferry::test::random_floats(11, 101, -1e3f, 1e3f));
  e.array<double>("test.array_f64", {0.1, -2.5e-300, 1.0 / 3.0});
  e.array<bool>("test.array_bool", {true, false, true});
  e.array<uint32_t>("test.array_empty_u32", {});
  e.string_array("test.array_empty_string", {});
  e.string_array("test.array_string", {"", "a", "\xc3\xbc", "tab\there", std::string(200, 'y')});
  // A vocabulary-sized array, the case `info` summarises.
  std::vector<std::string> tokens;
  for (int i = 0; i < 1000; ++i) {
    std::string token = i % 7 == 0 ? "\xe2\x96\x81tok" : "t";  // U+2581, the SentencePiece word marker
    tokens.push_back(token += std::to_string(i));
  }
  e.string_array("tokenizer.ggml.tokens", tokens);
}

// Shapes that exercise 1-4 dimensions and odd row counts; ne[0] is a multiple of the block.
std::vector<int64_t> shape_for(size_t index, uint32_t block_size) {
  const int64_t ne0 = static_cast<int64_t>(block_size) * (block_size == 1 ? 13 : 1 + static_cast<int64_t>(index % 3));
  switch (index % 4) {
    case 0:
      return {ne0, 3};
    case 1:
      return {ne0, 5, 2};
    case 2:
      return {ne0};
    default:
      return {ne0, 3, 1, 2};
  }
}

int write_command(const std::filesystem::path& out, uint64_t alignment, const std::filesystem::path& sidecar_dir) {
  std::filesystem::create_directories(sidecar_dir);
  ferry::GgufWriter writer(alignment);
  Expected expected{writer};
  add_metadata(expected);

  Json tensors = Json::array();
  std::vector<std::vector<std::byte>> data;  // kept alive until write(): add_tensor copies from the span then
  size_t index = 0;
  for (const ferry::TypeTraits& traits : ferry::all_type_traits()) {
    if (!traits.quantizable) continue;
    const std::vector<int64_t> ne = shape_for(index, traits.block_size);
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    const std::vector<float> weights = ferry::test::random_weights(static_cast<size_t>(n), 1000 + index, 0.05f);
    std::vector<std::byte> bytes(static_cast<size_t>(ferry::row_bytes(traits.type, ne[0]) * (n / ne[0])));
    for (int64_t row = 0; row < n / ne[0]; ++row)
      ferry::ref::quantize(traits.type, weights.data() + row * ne[0],
                           bytes.data() + row * ferry::row_bytes(traits.type, ne[0]), ne[0]);
    std::string name = "t";
    name += std::to_string(index) + "." + std::string(traits.name) + ".weight";
    const std::string bin = std::to_string(index) + ".bin";
    std::ofstream(sidecar_dir / bin, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    tensors.push_back({{"name", name}, {"type", std::string(traits.name)}, {"ne", ne}, {"data", bin}});
    data.push_back(std::move(bytes));
    writer.add_tensor(name, traits.type, ne, std::span<const std::byte>(data.back()));
    ++index;
  }
  writer.write(out);
  const Json sidecar = {{"alignment", alignment}, {"metadata", expected.metadata}, {"tensors", tensors}};
  std::ofstream(sidecar_dir / "expected.json") << sidecar.dump(1) << "\n";
  std::printf("wrote %s: %zu tensors, alignment %llu\n", out.c_str(), index,
              static_cast<unsigned long long>(alignment));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 4 && args[0] == "write") return write_command(args[1], std::stoull(args[2]), args[3]);
    if (args.size() == 3 && args[0] == "copy") {
      ferry::GgufWriter::copy_of(ferry::GgufFile::open(args[1])).write(args[2]);
      return 0;
    }
    std::fprintf(stderr,
                 "usage: ferry_interop_writer write OUT.gguf ALIGNMENT SIDECAR_DIR\n"
                 "       ferry_interop_writer copy IN.gguf OUT.gguf\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ferry_interop_writer: %s\n", e.what());
    return 1;
  }
}
