// Writes a seed corpus of small, valid GGUF files for fuzz_gguf_reader: every metadata type, string arrays, several
// tensor types and ranks, a non-default alignment, a file without tensors, a version 2 header. Usage:
//   make_seed_corpus OUTPUT_DIR
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"

namespace {

using namespace ferry;

std::vector<std::byte> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng() & 0xff);
  return v;
}

// Keeps tensor data alive until the writer has written it.
struct Seed {
  GgufWriter writer;
  std::vector<std::vector<std::byte>> data;

  explicit Seed(uint64_t alignment = 32) : writer(alignment) {}
  void tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, uint64_t seed) {
    uint64_t rows = 1;
    for (size_t d = 1; d < ne.size(); ++d) rows *= static_cast<uint64_t>(ne[d]);
    data.push_back(random_bytes(row_bytes(type, ne[0]) * rows, seed));
    writer.add_tensor(name, type, std::move(ne), std::span<const std::byte>(data.back()));
  }
};

void all_value_types(GgufWriter& w) {
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("general.name", GgufValue::string("seed"));
  w.set("t.u8", GgufValue::scalar(uint8_t{200}));
  w.set("t.i8", GgufValue::scalar(int8_t{-100}));
  w.set("t.u16", GgufValue::scalar(uint16_t{60000}));
  w.set("t.i16", GgufValue::scalar(int16_t{-30000}));
  w.set("t.u32", GgufValue::scalar(uint32_t{4000000000u}));
  w.set("t.i32", GgufValue::scalar(int32_t{-2000000000}));
  w.set("t.u64", GgufValue::scalar(uint64_t{1} << 60));
  w.set("t.i64", GgufValue::scalar(int64_t{-1} << 60));
  w.set("t.f32", GgufValue::scalar(1e-5f));
  w.set("t.f64", GgufValue::scalar(10000.0));
  w.set("t.bool", GgufValue::scalar(true));
  w.set("t.arr_i32", GgufValue::array(std::vector<int32_t>{1, -2, 3, -4}));
  w.set("t.arr_f32", GgufValue::array(std::vector<float>{0.5f, -1.0f, 2.0f}));
  w.set("t.arr_u8", GgufValue::array(std::vector<uint8_t>{}));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array({"<s>", "</s>", "a", "",
                                                          "\xe2\x96\x81"
                                                          "b"}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  try {
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    {
      Seed s;
      all_value_types(s.writer);
      s.tensor("token_embd.weight", GgmlType::Q4_0, {64, 3}, 1);
      s.tensor("blk.0.attn_norm.weight", GgmlType::F32, {13}, 2);
      s.tensor("blk.0.attn_q.weight", GgmlType::Q4_K, {256, 2}, 3);
      s.writer.write(dir / "llama_mixed.gguf");
    }
    {
      Seed s(64);
      s.writer.set("general.architecture", GgufValue::string("flux"));
      s.tensor("img_in.weight", GgmlType::F16, {7, 3}, 4);
      s.tensor("double_blocks.0.img_attn.qkv.weight", GgmlType::Q8_0, {32, 2, 2}, 5);
      s.tensor("final_layer.linear.bias", GgmlType::BF16, {5, 1, 1, 1}, 6);
      s.tensor("blk.0.iq", GgmlType::IQ2_XXS, {256, 1}, 7);
      s.tensor("blk.0.q6", GgmlType::Q6_K, {256, 1}, 8);
      s.writer.write(dir / "flux_align64.gguf");
    }
    {
      Seed s;
      all_value_types(s.writer);
      s.writer.write(dir / "metadata_only.gguf");
    }
    {
      Seed s(1);
      s.tensor("a", GgmlType::F32, {3}, 9);
      s.tensor("b", GgmlType::I8, {0, 2}, 10);
      s.tensor("c", GgmlType::Q5_K, {256, 1}, 11);
      s.writer.write(dir / "align1.gguf");
    }
    // Vocabularies for the tokenizer half of the target: SentencePiece with byte tokens, and GPT-2 BPE with merges.
    {
      Seed s;
      s.writer.set("tokenizer.ggml.model", GgufValue::string("llama"));
      s.writer.set("tokenizer.ggml.tokens",
                   GgufValue::string_array({"<unk>", "<s>", "</s>", "<0x41>", "<0xC3>", "<0xA9>", "\xe2\x96\x81",
                                            "\xe2\x96\x81H", "ello", "\xe2\x96\x81world", "1", "2"}));
      s.writer.set("tokenizer.ggml.scores",
                   GgufValue::array(std::vector<float>{0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -6}));
      s.writer.set("tokenizer.ggml.token_type",
                   GgufValue::array(std::vector<int32_t>{2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1}));
      s.writer.set("tokenizer.ggml.bos_token_id", GgufValue::scalar(int32_t{1}));
      s.writer.set("tokenizer.ggml.eos_token_id", GgufValue::scalar(int32_t{2}));
      s.writer.write(dir / "vocab_spm.gguf");
    }
    {
      Seed s;
      s.writer.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
      s.writer.set("tokenizer.ggml.tokens", GgufValue::string_array({"H", "e", "l", "o", "\xc4\xa0", "w", "r", "d",
                                                                     "He", "ll", "Hell", "Hello", "<|endoftext|>"}));
      s.writer.set("tokenizer.ggml.merges", GgufValue::string_array({"H e", "l l", "He ll", "Hell o"}));
      s.writer.set("tokenizer.ggml.eos_token_id", GgufValue::scalar(int32_t{12}));
      s.writer.write(dir / "vocab_bpe.gguf");
    }
    // Version 2 differs only in the version field; the reader accepts both.
    {
      const auto v3 = dir / "llama_mixed.gguf";
      std::vector<char> bytes(std::filesystem::file_size(v3));
      std::FILE* f = std::fopen(v3.c_str(), "rb");
      if (!f || std::fread(bytes.data(), 1, bytes.size(), f) != bytes.size()) throw std::runtime_error("read back");
      std::fclose(f);
      bytes[4] = 2;
      write_file_atomically(dir / "llama_v2.gguf",
                            std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
    }
    // Every seed must itself be valid.
    for (const auto& entry : std::filesystem::directory_iterator(dir)) (void)GgufFile::open(entry.path());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seed_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
