// The architectures that share llama's block (qwen2: q/k/v biases; qwen3: per-head q/k RMSNorm and a head size of its
// own; mistral: llama's block under another name) on the CPU against the float64 reference, and the errors for files
// that lack what their architecture needs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/model_maker.hpp"
#include "support/llama_reference.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

fs::path make_model(const test::TempDir& dir, const LlamaShape& shape, ModelFileType type, uint64_t seed,
                    const std::string& tag = "") {
  const fs::path path =
      dir.path() / (std::string(shape.name) + tag + "-" + std::string(model_file_type_name(type)) + ".gguf");
  write_llama_model(shape, MakeModelOptions{type, seed, 32, ""}, path);
  return path;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    t[static_cast<size_t>(i)] = static_cast<int32_t>((seed * 7919 + i * 104729) % n_vocab);
  return t;
}

std::vector<float> cpu_logits(const LlamaConfig& c, const LlamaWeights& w, const std::vector<int32_t>& tokens) {
  LlamaRunner runner(c, w, test::cpu_runner_options(64, 8));  // chunks of 8: T = 13 runs as two steps
  std::vector<float> logits(tokens.size() * static_cast<size_t>(c.n_vocab), NAN);
  runner.forward(tokens, 0, logits, true);
  return logits;
}

std::string error_of(const fs::path& path) {
  try {
    const GgufFile file = GgufFile::open(path);
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    (void)LlamaWeights::from_gguf(file, c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("qwen2 and qwen3 files are read with their architecture's keys and tensors") {
  const test::TempDir dir;
  {
    const GgufFile file = GgufFile::open(make_model(dir, llama_preset("qwen2-tiny"), ModelFileType::Q8_0, 1));
    CHECK(file.get_string("general.architecture") == "qwen2");
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    CHECK(c.arch == LlamaArch::QWEN2);
    CHECK(c.rope_freq_base == 1000000.0f);  // qwen2.rope.freq_base, not the llama default
    CHECK(c.head_dim() == 64);
    const LlamaWeights w = LlamaWeights::from_gguf(file, c);
    for (const LlamaLayerWeights& l : w.layers) {
      CHECK(l.bq != nullptr);
      CHECK(l.bk != nullptr);
      CHECK(l.bv != nullptr);
      CHECK(l.q_norm == nullptr);
    }
  }
  {
    const GgufFile file = GgufFile::open(make_model(dir, llama_preset("qwen3-tiny"), ModelFileType::Q8_0, 1));
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    CHECK(c.arch == LlamaArch::QWEN3);
    CHECK(c.head_dim() == 96);   // qwen3.attention.key_length, not n_embd / n_head = 64
    CHECK(c.n_embd_q() == 384);  // wider than n_embd (256)
    const LlamaWeights w = LlamaWeights::from_gguf(file, c);
    CHECK(w.layers[0].wq.n_rows == 384);
    CHECK(w.layers[0].wo.n_cols == 384);
    CHECK(w.layers[0].q_norm != nullptr);
    CHECK(w.layers[0].bq == nullptr);
  }
}

TEST_CASE("qwen2 and qwen3 forward passes on the CPU match the float64 reference") {
  // Tolerances as for llama (test_llama_cpu.cpp): F32 only differs by summation order and the FP16 rounding of K/V;
  // Q8_0 activations are rounded to 8 bits per block in the CPU GEMV.
  const test::TempDir dir;
  for (const std::string preset : {"qwen2-tiny", "qwen3-tiny"}) {
    for (const auto& [type, tolerance] : {std::pair{ModelFileType::F32, 1e-3}, std::pair{ModelFileType::Q8_0, 3e-2}}) {
      CAPTURE(preset);
      CAPTURE(model_file_type_name(type));
      const GgufFile file = GgufFile::open(make_model(dir, llama_preset(preset), type, test::test_seed(31)));
      const LlamaConfig c = LlamaConfig::from_gguf(file);
      const LlamaWeights w = LlamaWeights::from_gguf(file, c);
      for (int64_t T : {1, 5, 13}) {
        CAPTURE(T);
        const auto tokens = some_tokens(T, c.n_vocab, test::test_seed(T));
        const std::vector<float> logits = cpu_logits(c, w, tokens);
        for (float v : logits) REQUIRE(std::isfinite(v));
        CHECK(test::relative_error(logits, test::llama_reference_logits(c, w, tokens)) <= tolerance);
      }
    }
  }
}

TEST_CASE("the reference itself tells the variants apart") {
  // The oracle must see what the variants add: the same weights read as llama (no bias, adjacent RoPE pairs) give
  // logits far from qwen2's. Without this a reference that ignored the biases or the pairing would pass the test
  // above against a block that ignored them too.
  const test::TempDir dir;
  const GgufFile file = GgufFile::open(make_model(dir, llama_preset("qwen2-tiny"), ModelFileType::F32, 5));
  LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  const auto tokens = some_tokens(6, c.n_vocab, 5);
  const std::vector<double> qwen2 = test::llama_reference_logits(c, w, tokens);
  c.arch = LlamaArch::LLAMA;
  const std::vector<double> as_llama = test::llama_reference_logits(c, w, tokens);
  CHECK(test::relative_error(std::vector<float>(as_llama.begin(), as_llama.end()), qwen2) > 0.05);
}

TEST_CASE("decode token by token equals prefill for qwen2 and qwen3") {
  const test::TempDir dir;
  for (const std::string preset : {"qwen2-tiny", "qwen3-tiny"}) {
    CAPTURE(preset);
    const GgufFile file = GgufFile::open(make_model(dir, llama_preset(preset), ModelFileType::F32, test::test_seed(7)));
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    const LlamaWeights w = LlamaWeights::from_gguf(file, c);
    const auto tokens = some_tokens(9, c.n_vocab, test::test_seed(2));
    const std::vector<float> all = cpu_logits(c, w, tokens);
    LlamaRunner decode(c, w, test::cpu_runner_options(32, 16));
    std::vector<float> last(static_cast<size_t>(c.n_vocab));
    for (size_t i = 0; i < tokens.size(); ++i) {
      decode.forward(std::span(tokens).subspan(i, 1), static_cast<int64_t>(i), last, false);
      const std::vector<double> expected(all.begin() + static_cast<ptrdiff_t>(i * c.n_vocab),
                                         all.begin() + static_cast<ptrdiff_t>((i + 1) * c.n_vocab));
      CHECK(test::relative_error(last, expected) <= 1e-3);  // see test_llama_cpu's decode test for the bound
    }
  }
}

TEST_CASE("a mistral file is llama's block under another name") {
  const test::TempDir dir;
  LlamaShape mistral = llama_preset("tiny");
  mistral.arch = LlamaArch::MISTRAL;
  const GgufFile llama_file = GgufFile::open(make_model(dir, llama_preset("tiny"), ModelFileType::Q4_0, 3));
  const GgufFile mistral_file = GgufFile::open(make_model(dir, mistral, ModelFileType::Q4_0, 3, "-mistral"));
  CHECK(mistral_file.get_string("general.architecture") == "mistral");
  CHECK(mistral_file.find("mistral.block_count") != nullptr);
  const LlamaConfig lc = LlamaConfig::from_gguf(llama_file), mc = LlamaConfig::from_gguf(mistral_file);
  CHECK(mc.arch == LlamaArch::MISTRAL);
  const auto tokens = some_tokens(7, lc.n_vocab, 3);
  const std::vector<float> a = cpu_logits(lc, LlamaWeights::from_gguf(llama_file, lc), tokens);
  const std::vector<float> b = cpu_logits(mc, LlamaWeights::from_gguf(mistral_file, mc), tokens);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("a file without the tensors its architecture needs is refused by name") {
  const test::TempDir dir;
  auto relabel = [&](const fs::path& source_path, const std::string& arch, const std::string& from) {
    // The hyper-parameter keys move to the new prefix; the tensors stay those of the source's architecture.
    const GgufFile source = GgufFile::open(source_path);
    GgufWriter w = GgufWriter::copy_of(source);
    w.set("general.architecture", GgufValue::string(arch));
    for (const char* key : {"vocab_size", "context_length", "embedding_length", "block_count", "feed_forward_length",
                            "rope.dimension_count", "attention.head_count", "attention.head_count_kv",
                            "attention.layer_norm_rms_epsilon", "rope.freq_base"})
      w.set(arch + "." + key, *source.find(from + "." + key));
    const fs::path path = dir.path() / (arch + "-from-" + from + ".gguf");
    w.write(path);
    return path;
  };
  const fs::path llama = make_model(dir, llama_preset("tiny"), ModelFileType::Q8_0, 1);
  const fs::path qwen2 = make_model(dir, llama_preset("qwen2-tiny"), ModelFileType::Q8_0, 1);
  std::string e = error_of(relabel(llama, "qwen2", "llama"));
  CAPTURE(e);
  CHECK(e.find("'blk.0.attn_q.bias' is missing") != std::string::npos);
  CHECK(e.find("qwen2") != std::string::npos);
  e = error_of(relabel(qwen2, "qwen3", "qwen2"));
  CHECK(e.find("'blk.0.attn_q_norm.weight' is missing") != std::string::npos);
  // A qwen2 file read as llama has the same tensors plus biases ferry would silently drop: the keys say qwen2, so the
  // file is read as what it is. An architecture ferry does not run is named, with the list.
  e = error_of(relabel(llama, "gemma", "llama"));
  CHECK(e.find("architecture 'gemma' is not supported") != std::string::npos);
  CHECK(e.find("qwen3") != std::string::npos);
}

TEST_CASE("the Qwen presets have the published sizes") {
  // Totals of the models' published configurations (untied output): Qwen2.5-7B 7.62e9, Qwen3-8B 8.19e9 parameters,
  // counted here tensor by tensor (including the q/k/v biases and the q/k head norms).
  CHECK(llama_preset("qwen2.5-7b").parameter_count() == 7615616512);
  CHECK(llama_preset("qwen3-8b").parameter_count() == 8190735360);
  CHECK(llama_preset("qwen3-8b").head_dim() == 128);
  CHECK(llama_preset("qwen2.5-7b").head_dim() == 128);
  for (const LlamaShape& s : llama_presets()) {
    CAPTURE(s.name);
    CHECK_NOTHROW(s.validate());
  }
  LlamaShape bad = llama_preset("qwen3-tiny");
  bad.n_head_dim = 90;  // q width 360: not whole 32-element blocks
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("q width 360"), Error);
}
