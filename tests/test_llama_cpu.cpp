// The llama forward pass on the CPU against the float64 reference, chunking and decode consistency, and the errors a
// user sees for files ferry cannot run.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_writer.hpp"
#include "ferry/models/llama/block.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/models/model_maker.hpp"
#include "support/llama_reference.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

using test::relative_error;

fs::path tiny_model(const test::TempDir& dir, ModelFileType type, uint64_t seed) {
  const fs::path path = dir.path() / ("tiny-" + std::string(model_file_type_name(type)) + ".gguf");
  write_llama_model(llama_preset("tiny"), MakeModelOptions{type, seed, 32, ""}, path);
  return path;
}

std::vector<int32_t> some_tokens(int64_t n, int64_t n_vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((seed * 7919 + i * 104729) % n_vocab);
  return t;
}

}  // namespace

TEST_CASE("CPU forward pass matches the float64 reference") {
  const test::TempDir dir;
  // F32 weights: only accumulation order differs from the reference, and through it the FP16 KV cache: K and V are
  // rounded to FP16 from float here and from double in the reference, so a value within float error of a rounding
  // midpoint lands one FP16 ulp (up to 2^-10 relative) apart, and one such flip in an early V row moves the logits by
  // ~1e-4 (measured over FERRY_TEST_SEED=0..60: median 7e-7, largest 8.5e-5). Tolerances: F32 1e-3, still 10x below
  // what quantized activations would give (the CPU GEMV path must not quantize activations for F32 weights);
  // quantized weights 3e-2 (the fused CPU GEMV rounds activations to 8 bits per block of 32, a ~0.4% error per dot
  // product that compounds over the layers; measured ~1e-2 on these shapes).
  struct Case {
    ModelFileType type;
    double tolerance;
  };
  for (const Case& cs : {Case{ModelFileType::F32, 1e-3}, Case{ModelFileType::Q8_0, 3e-2},
                         Case{ModelFileType::Q4_0, 3e-2}, Case{ModelFileType::Q4_K_M, 3e-2}}) {
    CAPTURE(model_file_type_name(cs.type));
    const GgufFile file = GgufFile::open(tiny_model(dir, cs.type, test::test_seed(3)));
    const LlamaConfig c = LlamaConfig::from_gguf(file);
    const LlamaWeights w = LlamaWeights::from_gguf(file, c);
    for (int64_t T : {1, 5, 13}) {
      CAPTURE(T);
      const auto tokens = some_tokens(T, c.n_vocab, test::test_seed(T));
      const std::vector<double> expected = test::llama_reference_logits(c, w, tokens);
      LlamaRunner runner(c, w, test::cpu_runner_options(64, 8));  // chunk of 8: T = 13 runs as two chunks
      std::vector<float> logits(T * c.n_vocab, NAN);
      runner.forward(tokens, 0, logits, true);
      for (float v : logits) REQUIRE(std::isfinite(v));
      CHECK(relative_error(logits, expected) <= cs.tolerance);
    }
  }
}

TEST_CASE("decode token by token equals prefill") {
  const test::TempDir dir;
  const GgufFile file = GgufFile::open(tiny_model(dir, ModelFileType::F32, test::test_seed(5)));
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  const auto tokens = some_tokens(9, c.n_vocab, test::test_seed(2));
  LlamaRunner prefill(c, w, test::cpu_runner_options(32, 16));
  std::vector<float> all(tokens.size() * c.n_vocab);
  prefill.forward(tokens, 0, all, true);
  LlamaRunner decode(c, w, test::cpu_runner_options(32, 16));
  std::vector<float> last(c.n_vocab);
  for (size_t i = 0; i < tokens.size(); ++i) {
    decode.forward(std::span(tokens).subspan(i, 1), static_cast<int64_t>(i), last, false);
    std::vector<double> expected(all.begin() + i * c.n_vocab, all.begin() + (i + 1) * c.n_vocab);
    // Same kernels, different grouping of tokens: the matmul path changes (T = 1 fused GEMV vs T = 9 Eigen GEMM),
    // so float32 sums are taken in another order (~3e-7 relative), which flips the FP16 rounding of the few K/V
    // values that sit at a midpoint; one flipped V element of an early token moves the logits by ~1e-4 (measured over
    // FERRY_TEST_SEED=0..60: largest per seed 1.4e-4, from 3 flips in layer 0). 1e-3 bounds a few flips; a wrong
    // position, mask or cache row gives > 1e-2.
    CHECK(relative_error(last, expected) <= 1e-3);
  }
}

TEST_CASE("the runner refuses prompts longer than the context and bad token ids") {
  const test::TempDir dir;
  const GgufFile file = GgufFile::open(tiny_model(dir, ModelFileType::Q8_0, test::test_seed(1)));
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, c);
  LlamaRunner runner(c, w, test::cpu_runner_options(8, 4));
  std::vector<float> logits(c.n_vocab * 9);
  const auto nine = some_tokens(9, c.n_vocab, test::test_seed(1));
  try {
    runner.forward(nine, 0, logits, true);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("context of 8") != std::string::npos);
  }
  const std::vector<int32_t> bad = {1, static_cast<int32_t>(c.n_vocab)};
  CHECK_THROWS_AS(runner.forward(bad, 0, logits, true), Error);
}

TEST_CASE("files ferry cannot run are refused by name") {
  const test::TempDir dir;
  const fs::path good = tiny_model(dir, ModelFileType::Q8_0, test::test_seed(1));
  auto refuse = [&](GgufWriter writer, const std::string& expect) {
    const fs::path p = dir.path() / "bad.gguf";
    writer.write(p);
    const GgufFile file = GgufFile::open(p);
    try {
      const LlamaConfig c = LlamaConfig::from_gguf(file);
      (void)LlamaWeights::from_gguf(file, c);
      FAIL("expected an error mentioning " << expect);
    } catch (const Error& e) {
      CAPTURE(e.what());
      CHECK(std::string(e.what()).find(expect) != std::string::npos);
    }
  };
  const GgufFile source = GgufFile::open(good);
  {
    GgufWriter w = GgufWriter::copy_of(source);
    w.set("general.architecture", GgufValue::string("flux"));
    refuse(std::move(w), "architecture 'flux'");
  }
  {
    GgufWriter w = GgufWriter::copy_of(source);
    w.set("llama.feed_forward_length", GgufValue::scalar<uint32_t>(1024));
    refuse(std::move(w), "blk.0.ffn_gate.weight");
  }
  {
    GgufWriter w = GgufWriter::copy_of(source);
    w.set("llama.block_count", GgufValue::string("two"));
    refuse(std::move(w), "llama.block_count");
  }
  {
    GgufWriter w = GgufWriter::copy_of(source);
    w.set("llama.attention.head_count_kv", GgufValue::scalar<uint32_t>(3));
    refuse(std::move(w), "head_count_kv");
  }
  {
    GgufWriter w;
    w.set("general.architecture", GgufValue::string("llama"));
    refuse(std::move(w), "llama.block_count");
  }
}

namespace {

// The RoPE base and RMS epsilon a Llama 3 style file carries, neither of them ferry's default (10000, 1e-5). The
// epsilon is far larger than real models' so that reading the default instead moves the logits well past the F32
// tolerance (1e-5 vs 1e-6 would change them by ~1e-6, below any tolerance).
constexpr float kFileRopeBase = 500000.0f;
constexpr float kFileRmsEps = 0.0625f;

// The tiny model with the two keys overwritten by the test, so the expected values come from here and not from what
// the maker or LlamaConfig wrote or read.
fs::path tiny_model_with_rope_and_eps(const test::TempDir& dir) {
  const fs::path source_path = tiny_model(dir, ModelFileType::F32, 9);
  const GgufFile source = GgufFile::open(source_path);
  GgufWriter w = GgufWriter::copy_of(source);
  w.set("llama.rope.freq_base", GgufValue::scalar(kFileRopeBase));
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::scalar(kFileRmsEps));
  const fs::path path = dir.path() / "tiny-rope500k.gguf";
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE("LlamaConfig reads the RoPE base and the RMS epsilon from the file") {
  const test::TempDir dir;
  const GgufFile file = GgufFile::open(tiny_model_with_rope_and_eps(dir));
  REQUIRE(file.get<float>("llama.rope.freq_base") == kFileRopeBase);  // the file says what the test wrote
  const LlamaConfig c = LlamaConfig::from_gguf(file);
  CHECK(c.rope_freq_base == kFileRopeBase);
  CHECK(c.rms_eps == kFileRmsEps);
  // Another pair, so a reader hard-wired to one preset's numbers is caught too.
  GgufWriter w = GgufWriter::copy_of(file);
  w.set("llama.rope.freq_base", GgufValue::scalar(1000000.0f));
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::scalar(1e-6f));
  const fs::path other_path = dir.path() / "tiny-rope1m.gguf";
  w.write(other_path);
  const LlamaConfig other = LlamaConfig::from_gguf(GgufFile::open(other_path));
  CHECK(other.rope_freq_base == 1000000.0f);
  CHECK(other.rms_eps == 1e-6f);
}

TEST_CASE("CPU forward pass with a non-default RoPE base and RMS epsilon matches the reference") {
  const test::TempDir dir;
  const GgufFile file = GgufFile::open(tiny_model_with_rope_and_eps(dir));
  const LlamaConfig read = LlamaConfig::from_gguf(file);
  const LlamaWeights w = LlamaWeights::from_gguf(file, read);
  // The reference gets the values the test put in the file, whatever LlamaConfig made of them.
  LlamaConfig expected_config = read;
  expected_config.rope_freq_base = kFileRopeBase;
  expected_config.rms_eps = kFileRmsEps;
  LlamaConfig default_base = expected_config, default_eps = expected_config;
  default_base.rope_freq_base = 10000.0f;
  default_eps.rms_eps = 1e-5f;
  for (int64_t T : {7, 13}) {  // RoPE only shows from the second position on; 13 spans two chunks of 8
    CAPTURE(T);
    const auto tokens = some_tokens(T, read.n_vocab, 11 + T);
    const std::vector<double> expected = test::llama_reference_logits(expected_config, w, tokens);
    // The test can fail: either default alone moves the reference by far more than the tolerance.
    for (const LlamaConfig* wrong : {&default_base, &default_eps}) {
      const std::vector<double> moved = test::llama_reference_logits(*wrong, w, tokens);
      CHECK(relative_error(std::vector<float>(moved.begin(), moved.end()), expected) > 1e-2);
    }
    LlamaRunner runner(read, w, test::cpu_runner_options(64, 8));
    std::vector<float> logits(T * read.n_vocab, NAN);
    runner.forward(tokens, 0, logits, true);
    CHECK(relative_error(logits, expected) <= 1e-4);  // F32 weights: the tolerance of the test above
  }
}
