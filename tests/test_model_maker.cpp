// Synthetic llama models: the presets (their published shapes: test_model_shapes.cpp), the tensor plan (names, shapes,
// the Q4_K_M mixture, k-quant fallbacks), the vocabulary, and whole files written and read back: metadata, tensor
// table, bytes equal to an independent single-threaded re-quantization, weight statistics, and determinism.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/kernels/ref/quants.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/models/model_presets.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"

namespace fs = std::filesystem;
using namespace ferry;

namespace {

// A file under the temporary directory, removed when the test ends (also when it fails).
class TempFile {
 public:
  explicit TempFile(const std::string& stem) {
    static int counter = 0;
    m_path = fs::temp_directory_path() /
             ("ferry_test_model_maker_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + stem);
  }
  ~TempFile() {
    std::error_code ec;
    fs::remove(m_path, ec);
  }
  const fs::path& path() const { return m_path; }

 private:
  fs::path m_path;
};

std::vector<char> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const SyntheticTensor& planned(const std::vector<SyntheticTensor>& plan, const std::string& name) {
  for (const auto& t : plan)
    if (t.name == name) return t;
  FAIL("tensor " << name << " is not in the plan");
  throw 0;  // unreachable: FAIL throws
}

struct Moments {
  double mean = 0, stddev = 0, within_one_sigma = 0, kurtosis = 0;
};

Moments moments(const std::vector<float>& v, double sigma_for_fraction) {
  Moments m;
  const double n = static_cast<double>(v.size());
  for (float x : v) m.mean += x;
  m.mean /= n;
  double m2 = 0, m4 = 0, inside = 0;
  for (float x : v) {
    const double d = x - m.mean;
    m2 += d * d;
    m4 += d * d * d * d;
    if (std::fabs(d) < sigma_for_fraction) inside += 1;
  }
  m2 /= n;
  m4 /= n;
  m.stddev = std::sqrt(m2);
  m.kurtosis = m4 / (m2 * m2);
  m.within_one_sigma = inside / n;
  return m;
}

std::vector<float> dequantized(const GgufFile& f, const GgufTensorInfo& info) {
  std::vector<float> out(static_cast<size_t>(info.n_elements));
  ref::dequantize(info.type, f.tensor_data(info).data(), out.data(), info.n_elements);
  return out;
}

// Normalised MSE of dequantized Gaussian data against the exact values for each type; bounds sit ~2x above what
// the reference quantizers reach on Gaussian rows (4-bit ~0.5-1%, 5-bit ~0.2%, 6-bit ~0.05%, 8-bit ~1e-5; F16 and
// BF16 are rounding only: 2^-22 and 2^-16 relative variance).
double max_normalized_error(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return 0.0;
    case GgmlType::F16:
      return 1e-6;
    case GgmlType::BF16:
      return 3e-5;
    case GgmlType::Q8_0:
      return 1e-4;
    case GgmlType::Q6_K:
      return 2e-3;
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q5_K:
      return 6e-3;
    default:
      return 2.5e-2;  // Q4_0, Q4_1, Q4_K
  }
}

}  // namespace

TEST_CASE("presets are valid, and the parameter count matches the published llama-2-7b figure") {
  for (const auto& p : llama_presets()) {
    CAPTURE(p.name);
    CHECK_NOTHROW(p.validate());
  }
  CHECK(llama_presets().size() == 11);                                // 7 llama-architecture shapes, 4 Qwen ones
  CHECK(llama_preset("llama-2-7b").parameter_count() == 6738415616);  // Meta's model card: 6.74B
  CHECK(llama_preset("tiny").head_dim() == 64);
  CHECK(llama_preset("llama-2-70b").n_embd_kv() == 1024);  // GQA: 8 KV heads of 128
  const LlamaShape& small = llama_preset("small");
  CHECK(small.n_ff % 256 != 0);  // the default model must exercise the k-quant fallback
  // a few MB in Q4_0 (~0.56 bytes per weight): small enough to generate on the fly
  CHECK(small.parameter_count() < 25'000'000);

  try {
    llama_preset("llama-9-1b");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::NOT_FOUND);
    const std::string msg = e.what();
    CHECK(msg.find("llama-9-1b") != std::string::npos);
    CHECK(msg.find("tiny, small, llama-2-7b") != std::string::npos);
    CHECK(msg.find("mistral-7b") != std::string::npos);
  }
  LlamaShape bad = llama_preset("tiny");
  bad.n_head = 3;  // 256 / 3 is not whole
  CHECK_THROWS_AS(bad.validate(), Error);
  bad = llama_preset("tiny");
  bad.n_head_kv = 3;  // 4 query heads cannot be grouped over 3 KV heads
  CHECK_THROWS_AS(bad.validate(), Error);
  bad = llama_preset("tiny");
  bad.n_ff = 100;  // not a whole number of 32-element blocks
  CHECK_THROWS_AS(plan_llama_tensors(bad, ModelFileType::Q4_0), Error);
  bad = llama_preset("tiny");
  bad.n_vocab = 258;
  CHECK_THROWS_AS(bad.validate(), Error);
}

TEST_CASE("model file types parse, print and map to llama.cpp's general.file_type") {
  CHECK(all_model_file_types().size() == 12);
  for (ModelFileType t : all_model_file_types()) {
    const std::string name(model_file_type_name(t));
    CAPTURE(name);
    CHECK(parse_model_file_type(name) == t);
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(parse_model_file_type(upper) == t);
  }
  CHECK_FALSE(parse_model_file_type("q4_k_x").has_value());
  CHECK_FALSE(parse_model_file_type("").has_value());
  CHECK(gguf_file_type_id(ModelFileType::Q4_0) == 2);
  CHECK(gguf_file_type_id(ModelFileType::Q8_0) == 7);
  CHECK(gguf_file_type_id(ModelFileType::Q5_0) == 8);
  CHECK(gguf_file_type_id(ModelFileType::Q4_K_M) == 15);
  CHECK(gguf_file_type_id(ModelFileType::BF16) == 32);
  CHECK(model_file_type_names().find("q4_k_m") != std::string::npos);
}

TEST_CASE("the tensor plan has llama names, ne = [in, out] shapes and the file's type") {
  const LlamaShape& s = llama_preset("llama-2-70b");
  const auto plan = plan_llama_tensors(s, ModelFileType::Q4_0);
  REQUIRE(plan.size() == static_cast<size_t>(s.n_layer * 9 + 3));
  std::set<std::string> names;
  for (const auto& t : plan) names.insert(t.name);
  CHECK(names.size() == plan.size());
  CHECK(planned(plan, "token_embd.weight").ne == std::vector<int64_t>{8192, 32000});
  CHECK(planned(plan, "output.weight").ne == std::vector<int64_t>{8192, 32000});
  CHECK(planned(plan, "output_norm.weight").ne == std::vector<int64_t>{8192});
  CHECK(planned(plan, "blk.79.attn_q.weight").ne == std::vector<int64_t>{8192, 8192});
  CHECK(planned(plan, "blk.79.attn_k.weight").ne == std::vector<int64_t>{8192, 1024});
  CHECK(planned(plan, "blk.0.attn_v.weight").ne == std::vector<int64_t>{8192, 1024});
  CHECK(planned(plan, "blk.0.attn_output.weight").ne == std::vector<int64_t>{8192, 8192});
  CHECK(planned(plan, "blk.5.ffn_gate.weight").ne == std::vector<int64_t>{8192, 28672});
  CHECK(planned(plan, "blk.5.ffn_up.weight").ne == std::vector<int64_t>{8192, 28672});
  CHECK(planned(plan, "blk.5.ffn_down.weight").ne == std::vector<int64_t>{28672, 8192});
  CHECK(planned(plan, "blk.5.ffn_norm.weight").ne == std::vector<int64_t>{8192});
  for (const auto& t : plan) {
    CAPTURE(t.name);
    CHECK(t.type == (t.ne.size() == 1 ? GgmlType::F32 : GgmlType::Q4_0));
    CHECK(t.stddev == doctest::Approx(t.ne.size() == 1                        ? 0.02
                                      : t.role == LlamaTensorRole::TOKEN_EMBD ? 1.0
                                                                              : 1.0 / std::sqrt(double(t.ne[0]))));
  }
  // Size of a llama-2-7b Q4_0 file's tensor data, from first principles: 18 bytes per 32 weights, F32 norms.
  const LlamaShape& l7 = llama_preset("llama-2-7b");
  uint64_t total = 0;
  for (const auto& t : plan_llama_tensors(l7, ModelFileType::Q4_0)) total += t.n_bytes();
  const uint64_t norm_params = static_cast<uint64_t>(2 * l7.n_layer + 1) * 4096;
  CHECK(total == (static_cast<uint64_t>(l7.parameter_count()) - norm_params) / 32 * 18 + norm_params * 4);
}

TEST_CASE("q4_k_m has llama.cpp's mixture and the k-quant fallbacks") {
  // llama.cpp gives attn_v and ffn_down Q6_K in the first and last eighth of the layers and every third layer in
  // between; for 32 layers that is this list (worked out by hand from the rule).
  const std::set<int64_t> wide32 = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
  const auto plan = plan_llama_tensors(llama_preset("llama-2-7b"), ModelFileType::Q4_K_M);
  std::map<GgmlType, int> count;
  for (const auto& t : plan) {
    CAPTURE(t.name);
    ++count[t.type];
    GgmlType expected = GgmlType::Q4_K;
    if (t.ne.size() == 1)
      expected = GgmlType::F32;
    else if (t.role == LlamaTensorRole::OUTPUT)
      expected = GgmlType::Q6_K;
    else if ((t.role == LlamaTensorRole::ATTN_V || t.role == LlamaTensorRole::FFN_DOWN) && wide32.count(t.layer))
      expected = GgmlType::Q6_K;
    CHECK(t.type == expected);
  }
  CHECK(count[GgmlType::Q6_K] == 2 * 16 + 1);
  CHECK(count[GgmlType::F32] == 65);
  // The published llama-2-7b Q4_K_M files are 4.08 GB; ours has the same mixture so it lands within 1%.
  uint64_t total = 0;
  for (const auto& t : plan) total += t.n_bytes();
  CHECK(static_cast<double>(total) == doctest::Approx(4.08e9).epsilon(0.01));

  // small: n_ff = 1408 is not a multiple of 256, so ffn_down (ne0 = n_ff) falls back: Q4_K -> Q5_0, Q6_K -> Q8_0.
  // 4 layers: layers 2 and 3 get more bits (3 >= 7*4/8; (2 - 0) % 3 == 2).
  const auto small = plan_llama_tensors(llama_preset("small"), ModelFileType::Q4_K_M);
  CHECK(planned(small, "blk.0.ffn_down.weight").type == GgmlType::Q5_0);
  CHECK(planned(small, "blk.1.ffn_down.weight").type == GgmlType::Q5_0);
  CHECK(planned(small, "blk.2.ffn_down.weight").type == GgmlType::Q8_0);
  CHECK(planned(small, "blk.3.ffn_down.weight").type == GgmlType::Q8_0);
  CHECK(planned(small, "blk.0.attn_v.weight").type == GgmlType::Q4_K);
  CHECK(planned(small, "blk.2.attn_v.weight").type == GgmlType::Q6_K);
  CHECK(planned(small, "blk.0.ffn_up.weight").type == GgmlType::Q4_K);  // ne0 = 512: no fallback
  CHECK(llama_tensor_type(ModelFileType::Q5_K, LlamaTensorRole::FFN_DOWN, 0, 4, 1408) == GgmlType::Q5_1);
  CHECK(llama_tensor_type(ModelFileType::Q6_K, LlamaTensorRole::FFN_DOWN, 0, 4, 1408) == GgmlType::Q8_0);
  CHECK(llama_tensor_type(ModelFileType::Q4_0, LlamaTensorRole::OUTPUT, -1, 4, 1408) == GgmlType::Q4_0);
  CHECK(llama_tensor_type(ModelFileType::Q4_0, LlamaTensorRole::FFN_GATE, 0, 4, 48) == GgmlType::F16);
}

TEST_CASE("the vocabulary is a valid SentencePiece-style vocabulary of exactly n_vocab unique tokens") {
  for (int64_t n : {259, 512, 4096, 32000, 128256}) {
    CAPTURE(n);
    const SyntheticVocab v = make_llama_vocab(n);
    REQUIRE(v.tokens.size() == static_cast<size_t>(n));
    REQUIRE(v.scores.size() == static_cast<size_t>(n));
    REQUIRE(v.token_types.size() == static_cast<size_t>(n));
    CHECK(v.tokens[0] == "<unk>");
    CHECK(v.token_types[0] == SyntheticVocab::kUnknown);
    CHECK(v.tokens[1] == "<s>");
    CHECK(v.tokens[2] == "</s>");
    CHECK(v.token_types[1] == SyntheticVocab::kControl);
    CHECK(v.token_types[2] == SyntheticVocab::kControl);
    CHECK(v.tokens[3] == "<0x00>");
    CHECK(v.tokens[3 + 0x0A] == "<0x0A>");
    CHECK(v.tokens[258] == "<0xFF>");
    for (int i = 3; i < 259; ++i) CHECK(v.token_types[static_cast<size_t>(i)] == SyntheticVocab::kByte);
    std::unordered_set<std::string> seen(v.tokens.begin(), v.tokens.end());
    CHECK(seen.size() == v.tokens.size());
    for (size_t i = 259; i < v.tokens.size(); ++i) {
      if (v.token_types[i] != SyntheticVocab::kNormal || v.tokens[i].empty() ||
          (i > 259 && !(v.scores[i] < v.scores[i - 1]))) {
        FAIL("piece " << i << " '" << v.tokens[i] << "' has type " << v.token_types[i] << " score " << v.scores[i]);
      }
    }
  }
  const SyntheticVocab v = make_llama_vocab(4096);
  const std::unordered_set<std::string> all(v.tokens.begin(), v.tokens.end());
  const std::string space = "\xE2\x96\x81";
  for (const char* piece : {"\xE2\x96\x81", "a", "Z", "7", ".", "\xE2\x96\x81the", "\xE2\x96\x81model", "ing"})
    CHECK(all.count(piece) == 1);
  // Every listed (not generated) piece can be built by merging a piece that is one character shorter with a
  // single-character piece: the tokenizer can reach it.
  size_t checked = 0;
  for (size_t i = 259; i < v.tokens.size(); ++i) {
    const std::string& p = v.tokens[i];
    if (p.rfind(space + "tok", 0) == 0 && p.size() > space.size() + 3 &&
        std::isdigit(static_cast<unsigned char>(p.back())))
      continue;  // generated filler
    if (p == space || p.size() == 1) continue;
    const std::string head = p.substr(0, p.size() - 1), tail = p.substr(p.size() - 1);
    CAPTURE(p);
    CHECK(all.count(head) == 1);
    CHECK(all.count(tail) == 1);
    ++checked;
  }
  CHECK(checked > 400);
  CHECK_THROWS_AS(make_llama_vocab(258), Error);
}

TEST_CASE("a tiny model reads back with every tensor, its shape, type, metadata and exact bytes") {
  const LlamaShape& s = llama_preset("tiny");
  for (ModelFileType type : all_model_file_types()) {
    const std::string type_name(model_file_type_name(type));
    CAPTURE(type_name);
    TempFile file("tiny_" + type_name + ".gguf");
    MakeModelOptions o;
    o.type = type;
    o.seed = test::test_seed(1234);
    size_t progress_calls = 0;
    uint64_t last_bytes = 0;
    write_llama_model(s, o, file.path(), [&](size_t done, size_t total, uint64_t bytes, uint64_t total_bytes) {
      ++progress_calls;
      CHECK(done <= total);
      CHECK(bytes <= total_bytes);
      CHECK(bytes >= last_bytes);
      last_bytes = bytes;
    });
    const GgufFile f = GgufFile::open(file.path());
    const auto plan = plan_llama_tensors(s, type);
    CHECK(progress_calls == plan.size());
    REQUIRE(f.tensors().size() == plan.size());
    CHECK(f.alignment() == 32);
    CHECK(f.find("general.alignment") == nullptr);  // 32 is the default and is not written

    // metadata: values and their exact GGUF types
    auto key_type = [&](const char* k) { return f.at(k).type(); };
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_string("general.name") == "synthetic tiny");
    CHECK(f.get<uint32_t>("general.file_type") == gguf_file_type_id(type));
    for (const char* k :
         {"general.file_type", "llama.vocab_size", "llama.context_length", "llama.embedding_length",
          "llama.block_count", "llama.feed_forward_length", "llama.rope.dimension_count", "llama.attention.head_count",
          "llama.attention.head_count_kv", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
      CAPTURE(k);
      CHECK(key_type(k) == GgufValueType::UINT32);
    }
    CHECK(f.get<uint32_t>("llama.vocab_size") == 512);
    CHECK(f.get<uint32_t>("llama.context_length") == 512);
    CHECK(f.get<uint32_t>("llama.embedding_length") == 256);
    CHECK(f.get<uint32_t>("llama.block_count") == 2);
    CHECK(f.get<uint32_t>("llama.feed_forward_length") == 768);
    CHECK(f.get<uint32_t>("llama.rope.dimension_count") == 64);
    CHECK(f.get<uint32_t>("llama.attention.head_count") == 4);
    CHECK(f.get<uint32_t>("llama.attention.head_count_kv") == 2);
    CHECK(key_type("llama.attention.layer_norm_rms_epsilon") == GgufValueType::FLOAT32);
    CHECK(f.get<float>("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
    CHECK(key_type("llama.rope.freq_base") == GgufValueType::FLOAT32);
    CHECK(f.get<float>("llama.rope.freq_base") == 10000.0f);
    CHECK(f.get_string("tokenizer.ggml.model") == "llama");
    CHECK(f.get<uint32_t>("tokenizer.ggml.bos_token_id") == 1);
    CHECK(f.get<uint32_t>("tokenizer.ggml.eos_token_id") == 2);
    const SyntheticVocab vocab = make_llama_vocab(512);
    CHECK(f.get_string_array("tokenizer.ggml.tokens") == vocab.tokens);
    CHECK(f.at("tokenizer.ggml.scores").array_type() == GgufValueType::FLOAT32);
    CHECK(f.get_array<float>("tokenizer.ggml.scores") == vocab.scores);
    CHECK(f.at("tokenizer.ggml.token_type").array_type() == GgufValueType::INT32);
    CHECK(f.get_array<int32_t>("tokenizer.ggml.token_type") == vocab.token_types);

    // tensors: in plan order, with the planned shape and type; bytes equal to a single-threaded re-quantization
    // of the F32 values (the F32 fill of a tensor with the same name and seed gives the exact pre-quantization
    // values, since the generator is keyed by name and row, not type).
    for (size_t i = 0; i < plan.size(); ++i) {
      const SyntheticTensor& want = plan[i];
      const GgufTensorInfo& got = f.tensors()[i];
      CAPTURE(want.name);
      REQUIRE(got.name == want.name);
      CHECK(got.ne == want.ne);
      CHECK(got.type == want.type);
      REQUIRE(got.n_bytes == want.n_bytes());

      SyntheticTensor exact = want;
      exact.type = GgmlType::F32;
      std::vector<float> values(static_cast<size_t>(exact.n_elements()));
      fill_synthetic_tensor(exact, test::test_seed(1234), std::as_writable_bytes(std::span(values)));
      std::vector<std::byte> expected(static_cast<size_t>(want.n_bytes()));
      const uint64_t rb = row_bytes(want.type, want.ne[0]);
      for (int64_t r = 0; r < exact.n_elements() / want.ne[0]; ++r)
        ref::quantize(want.type, values.data() + r * want.ne[0], expected.data() + r * rb, want.ne[0]);
      const auto data = f.tensor_data(got);
      CHECK(std::equal(data.begin(), data.end(), expected.begin(), expected.end()));

      const std::vector<float> deq = dequantized(f, got);
      CHECK(std::none_of(deq.begin(), deq.end(), [](float x) { return std::isnan(x) || std::isinf(x); }));
      CHECK(test::normalized_error(deq, values, values.size()) <= max_normalized_error(want.type));
      // Statistics of the stored weights. Sample-std relative error is ~1/sqrt(2n): 4.4% for a 256-element
      // norm, <= 0.4% for the matrices (n >= 32768); quantization noise adds < 1.3% to the std of 4-bit types.
      const Moments m = moments(deq, want.stddev);
      const double n = static_cast<double>(deq.size());
      if (want.ne.size() == 1) {
        CHECK(std::fabs(m.mean - 1.0) < 5.0 * 0.02 / std::sqrt(n));  // 5 standard errors of the mean
        CHECK(m.stddev == doctest::Approx(0.02).epsilon(0.2));       // 4.5 standard errors
      } else {
        CHECK(std::fabs(m.mean) < 5.0 * want.stddev / std::sqrt(n));
        CHECK(m.stddev == doctest::Approx(want.stddev).epsilon(0.03));
      }
    }
  }
}

TEST_CASE("weights are Gaussian with the intended scale") {
  const LlamaShape& s = llama_preset("small");
  const auto plan = plan_llama_tensors(s, ModelFileType::F32);
  for (const char* name : {"token_embd.weight", "blk.0.ffn_down.weight", "blk.3.attn_q.weight", "output.weight"}) {
    CAPTURE(name);
    SyntheticTensor t = planned(plan, name);
    std::vector<float> v(static_cast<size_t>(t.n_elements()));
    fill_synthetic_tensor(t, test::test_seed(99), std::as_writable_bytes(std::span(v)));
    const Moments m = moments(v, t.stddev);
    const double n = static_cast<double>(v.size());  // >= 262144 here
    CHECK(std::fabs(m.mean) < 5.0 * t.stddev / std::sqrt(n));
    CHECK(m.stddev == doctest::Approx(t.stddev).epsilon(0.01));  // > 7 standard errors of the std
    // A normal distribution has 68.27% within one sigma and kurtosis 3; a uniform one would give 57.7% and 1.8.
    CHECK(m.within_one_sigma == doctest::Approx(0.6827).epsilon(0.01));
    CHECK(m.kurtosis == doctest::Approx(3.0).epsilon(0.03));
  }
  // Rows of one tensor, and equal-shaped tensors, are independent streams: no two rows may repeat.
  SyntheticTensor q = planned(plan, "blk.0.attn_q.weight"), k = planned(plan, "blk.1.attn_q.weight");
  std::vector<float> a(static_cast<size_t>(q.n_elements())), b(a.size());
  fill_synthetic_tensor(q, test::test_seed(5), std::as_writable_bytes(std::span(a)));
  fill_synthetic_tensor(k, test::test_seed(5), std::as_writable_bytes(std::span(b)));
  CHECK_FALSE(std::equal(a.begin(), a.begin() + 512, a.begin() + 512));
  CHECK_FALSE(std::equal(a.begin(), a.end(), b.begin()));
  // Across parallel chunks too: every one of the embedding's 4096 rows (32 tasks of 128 rows) starts differently.
  SyntheticTensor e = planned(plan, "token_embd.weight");
  std::vector<float> emb(static_cast<size_t>(e.n_elements()));
  fill_synthetic_tensor(e, test::test_seed(5), std::as_writable_bytes(std::span(emb)));
  std::set<std::pair<float, float>> row_starts;
  for (int64_t r = 0; r < e.ne[1]; ++r) row_starts.emplace(emb[size_t(r * e.ne[0])], emb[size_t(r * e.ne[0] + 1)]);
  CHECK(row_starts.size() == static_cast<size_t>(e.ne[1]));
  // a wrong-sized buffer is refused
  std::vector<std::byte> small_buf(16);
  CHECK_THROWS_AS(fill_synthetic_tensor(q, test::test_seed(5), small_buf), Error);
}

TEST_CASE("same seed gives identical bytes whatever the thread count; another seed changes every tensor") {
  const LlamaShape& s = llama_preset("small");
  MakeModelOptions o;
  o.type = ModelFileType::Q4_K_M;
  o.seed = test::test_seed(42);
  TempFile a("a.gguf"), b("b.gguf"), c("c.gguf");
  write_llama_model(s, o, a.path());
  {
    tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
    write_llama_model(s, o, b.path());
  }
  o.seed = test::test_seed(43);
  write_llama_model(s, o, c.path());
  const auto bytes_a = read_bytes(a.path()), bytes_b = read_bytes(b.path());
  REQUIRE(bytes_a.size() > 1'000'000);
  CHECK(bytes_a == bytes_b);
  const GgufFile fa = GgufFile::open(a.path()), fc = GgufFile::open(c.path());
  REQUIRE(fa.tensors().size() == fc.tensors().size());
  CHECK(fa.file_size() == fc.file_size());
  for (size_t i = 0; i < fa.tensors().size(); ++i) {
    CAPTURE(fa.tensors()[i].name);
    const auto da = fa.tensor_data(fa.tensors()[i]), dc = fc.tensor_data(fc.tensors()[i]);
    CHECK_FALSE(std::equal(da.begin(), da.end(), dc.begin(), dc.end()));
  }
}

TEST_CASE("alignment and name options are written") {
  MakeModelOptions o;
  o.alignment = 64;
  o.name = "aligned model";
  TempFile file("aligned.gguf");
  write_llama_model(llama_preset("tiny"), o, file.path());
  const GgufFile f = GgufFile::open(file.path());
  CHECK(f.alignment() == 64);
  CHECK(f.get<uint32_t>("general.alignment") == 64);
  CHECK(f.get_string("general.name") == "aligned model");
  for (const auto& t : f.tensors()) CHECK(t.file_offset % 64 == 0);
}

#ifdef FERRY_EXE
namespace {
struct Run {
  int status;
  std::string output;  // stdout and stderr together
};
Run run_ferry(const std::string& args) {
  const std::string cmd = std::string(FERRY_EXE) + " " + args + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int raw = ::pclose(pipe);
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, out};
}
}  // namespace

TEST_CASE("ferry make-model: writes the same file as the library, and refuses bad input clearly") {
  TempFile file("cli.gguf");
  const Run ok = run_ferry("make-model --arch llama --preset tiny --type q4_k_m --seed " +
                           std::to_string(test::test_seed(7)) + " -o " + file.path().string());
  CAPTURE(ok.output);
  REQUIRE(ok.status == 0);
  CHECK(ok.output.find("wrote") != std::string::npos);
  TempFile lib("lib.gguf");
  MakeModelOptions o;
  o.type = ModelFileType::Q4_K_M;
  o.seed = test::test_seed(7);
  write_llama_model(llama_preset("tiny"), o, lib.path());
  CHECK(read_bytes(file.path()) == read_bytes(lib.path()));

  TempFile never("never.gguf");
  const Run flux = run_ferry("make-model --arch flux --preset tiny -o " + never.path().string());
  CHECK(flux.status == 2);  // a wrong flag value: a usage error
  CHECK(flux.output.find("'tiny' is not a flux preset") != std::string::npos);
  CHECK(flux.output.find("flux-tiny") != std::string::npos);
  const Run mismatch = run_ferry("make-model --arch qwen2 --preset tiny -o " + never.path().string());
  CHECK(mismatch.status == 2);  // qwen2 needs tensors a llama preset has not
  CHECK(mismatch.output.find("preset 'tiny' is a llama model, not qwen2") != std::string::npos);
  const Run preset = run_ferry("make-model --preset llama-9 -o " + never.path().string());
  CHECK(preset.status == 2);  // a wrong flag value: a usage error
  CHECK(preset.output.find("llama-9") != std::string::npos);
  CHECK(preset.output.find("llama-2-13b") != std::string::npos);
  const Run type = run_ferry("make-model --preset tiny --type q3_x -o " + never.path().string());
  CHECK(type.status == 2);  // a wrong flag value: a usage error
  CHECK(type.output.find("q4_k_m") != std::string::npos);
  CHECK_FALSE(fs::exists(never.path()));
  // llama and mistral are one block under two names: a llama preset is written as mistral, keys and all.
  TempFile mistral("mistral.gguf");
  const Run as_mistral = run_ferry("make-model --arch mistral --preset tiny -o " + mistral.path().string());
  CHECK(as_mistral.status == 0);
  CHECK(as_mistral.output.find("mistral tiny") != std::string::npos);
  CHECK(GgufFile::open(mistral.path()).find("mistral.block_count") != nullptr);
  // An output that cannot be written is bad input (1), not a usage error, and names the path.
  const fs::path unwritable = fs::path(never.path().string() + ".missing_dir") / "x.gguf";
  const Run io = run_ferry("make-model --preset tiny -o " + unwritable.string());
  CHECK(io.status == 1);
  CHECK(io.output.find(unwritable.string()) != std::string::npos);
}
#endif
