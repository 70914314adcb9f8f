// libFuzzer target for token sampling and the generation loop: hostile logits (NaN, ±Inf, denormals, huge values, all
// equal, all -Inf, a vocabulary of one or none) and hostile sampler settings (temperature, top-k, top-p decoded from
// the input), through ferry::Sampler directly and through generate() over a backend that returns those logits.
// A ferry::Error is an acceptable outcome where the contract allows one; a crash, a sanitizer report, a hang, another
// exception type, or a broken contract (checked below with __builtin_trap) is a finding:
// - Sampler's constructor throws exactly for a temperature that is NaN or negative, or a top-p outside (0, 1];
// - sample() throws exactly when no logit is finite; otherwise it returns an id whose logit is finite, the first
//   maximum when greedy, and one of the top_k largest when top_k > 0;
// - generate() never asks the backend for positions beyond its context, emits one piece per generated token, and
//   generates at most max_new_tokens.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/text/generate.hpp"
#include "ferry/text/sampler.hpp"
#include "ferry/text/tokenizer.hpp"

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kDenorm = std::numeric_limits<float>::denorm_min();
constexpr float kMax = std::numeric_limits<float>::max();

// Reads the input front to back; bytes past the end read as zero, so every input decodes to something.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : m_data(data), m_size(size) {}
  uint8_t u8() { return m_pos < m_size ? m_data[m_pos++] : 0; }
  uint16_t u16() {
    const uint16_t lo = u8();  // two statements: the order of the reads is fixed
    return static_cast<uint16_t>(lo | (u8() << 8));
  }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(u8()) << (8 * i);
    return v;
  }
  float raw_float() {
    const uint32_t bits = u32();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  // A setting: one of the values where bugs live (selector < 16) or any bit pattern.
  float setting() {
    static constexpr float kTable[16] = {0.0f, -0.0f, 1.0f, 0.5f,  0.95f, kDenorm, -kDenorm,  1e-30f,
                                         kMax, -1.0f, kInf, -kInf, kNaN,  1e30f,   0.999999f, 100.0f};
    const uint8_t selector = u8();
    const float raw = raw_float();
    return selector < 16 ? kTable[selector] : raw;
  }
  // A logit: special values, any bit pattern, or a small ordinary value.
  float logit() {
    static constexpr float kTable[16] = {kNaN,  kInf, -kInf, kDenorm, -kDenorm, kMax,   -kMax,    0.0f,
                                         -0.0f, 1.0f, -1.0f, 1e30f,   -1e30f,   88.73f, -103.97f, 1.17549435e-38f};
    const uint8_t code = u8();
    if (code < 16) return kTable[code];
    if (code < 32) return raw_float();
    return static_cast<float>(static_cast<int>(code) - 144) / 16.0f;
  }
  std::string bytes(size_t n) {
    std::string s;
    for (size_t i = 0; i < n && m_pos < m_size; ++i) s += static_cast<char>(m_data[m_pos++]);
    return s;
  }
  bool done() const { return m_pos >= m_size; }

 private:
  const uint8_t* m_data;
  size_t m_size;
  size_t m_pos = 0;
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// A SentencePiece vocabulary with all 256 byte tokens, so any prompt bytes encode.
const ferry::Tokenizer& tokenizer() {
  static const ferry::Tokenizer t = [] {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<float> scores = {0, 0, 0};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      tokens.push_back(name);
      scores.push_back(0);
      types.push_back(6);
    }
    const std::string mark = "\xE2\x96\x81";  // SentencePiece's word marker
    for (const std::string& piece :
         {mark, std::string("a"), std::string("b"), mark + "a", std::string("ab"), mark + "ab"}) {
      tokens.push_back(piece);
      scores.push_back(-static_cast<float>(tokens.size()));
      types.push_back(1);
    }
    return ferry::Tokenizer::from_vocab(ferry::TokenizerKind::SPM, tokens, scores, types, {}, 1, 2);
  }();
  return t;
}

// The logits of step `step`: the decoded values repeated over the vocabulary, rotated by the step.
void fill_logits(std::span<float> out, const std::vector<float>& values, size_t step) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = values.empty() ? -kInf : values[(i + step) % values.size()];
}

class FuzzBackend final : public ferry::CausalLm {
 public:
  FuzzBackend(int64_t n_ctx, int64_t n_vocab, const std::vector<float>& values)
      : m_n_ctx(n_ctx), m_n_vocab(n_vocab), m_values(values) {}
  int64_t n_ctx() const noexcept override { return m_n_ctx; }
  int64_t n_vocab() const noexcept override { return m_n_vocab; }
  void forward(std::span<const int32_t> tokens, int64_t pos0, std::span<float> logits, bool all_logits) override {
    check(!all_logits && !tokens.empty() && pos0 >= 0);
    check(pos0 + static_cast<int64_t>(tokens.size()) <= m_n_ctx);
    check(logits.size() == static_cast<size_t>(m_n_vocab));
    for (int32_t t : tokens) check(t >= 0 && static_cast<size_t>(t) < tokenizer().vocab_size());
    fill_logits(logits, m_values, m_steps++);
  }

 private:
  int64_t m_n_ctx, m_n_vocab;
  const std::vector<float>& m_values;
  size_t m_steps = 0;
};

bool valid_config(const ferry::SamplerConfig& c) {
  return c.temperature >= 0.0f && c.top_p > 0.0f && c.top_p <= 1.0f;  // false for NaN
}

// Samples `logits` a few times and checks each result against the contract.
void sample_and_check(ferry::Sampler& sampler, const ferry::SamplerConfig& config, std::span<const float> logits) {
  int32_t first_max = -1;
  for (size_t i = 0; i < logits.size(); ++i)
    if (std::isfinite(logits[i]) && (first_max < 0 || logits[i] > logits[first_max]))
      first_max = static_cast<int32_t>(i);
  for (int draw = 0; draw < 3; ++draw) {
    int32_t id = -1;
    try {
      id = sampler.sample(logits);
    } catch (const ferry::Error&) {
      check(first_max < 0);  // refused only when there is nothing to choose
      return;
    }
    check(first_max >= 0);
    check(id >= 0 && static_cast<size_t>(id) < logits.size());
    check(std::isfinite(logits[id]));
    if (config.temperature == 0.0f) check(id == first_max);
    if (config.top_k > 0) {
      size_t larger = 0;
      for (float v : logits) larger += std::isfinite(v) && v > logits[id];
      check(larger < static_cast<size_t>(config.top_k));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  const uint8_t flags = in.u8();
  ferry::SamplerConfig config;
  config.temperature = in.setting();
  config.top_p = in.setting();
  config.top_k = static_cast<int32_t>(in.u32());
  config.seed = in.u8();
  const int64_t n_vocab = static_cast<int64_t>(in.u16() % 600);  // 0 .. beyond the vocabulary
  const int64_t n_ctx = static_cast<int64_t>(in.u8() % 48) - 2;  // a few nonsensical ones
  const auto max_new_tokens = static_cast<int16_t>(in.u16());
  const std::string prompt = in.bytes(in.u8() % 24);
  std::vector<float> values;
  while (!in.done() && values.size() < 4096) values.push_back(in.logit());

  // The sampler on its own.
  try {
    ferry::Sampler sampler(config);
    check(valid_config(config));
    std::vector<float> logits(static_cast<size_t>(n_vocab));
    fill_logits(logits, values, 0);
    sample_and_check(sampler, config, logits);
  } catch (const ferry::Error&) {
    check(!valid_config(config));
  }

  // The generation loop over a backend that returns the same hostile logits.
  if ((flags & 1) == 0) return 0;
  FuzzBackend backend(n_ctx, n_vocab, values);
  ferry::GenerateOptions options;
  options.prompt = prompt;
  options.max_new_tokens = max_new_tokens;
  options.add_bos = (flags & 2) == 0;
  options.sampler = config;
  int64_t pieces = 0;
  try {
    const ferry::GenerateStats stats =
        ferry::generate(backend, tokenizer(), options, [&](std::string_view) { ++pieces; });
    check(stats.generated_tokens == pieces);
    check(stats.generated_tokens <= std::max<int64_t>(0, max_new_tokens));
    // Every position holds an evaluated token; the last token sampled needs none (it is never fed back).
    check(stats.n_past <= n_ctx);
    check(stats.prompt_tokens + stats.generated_tokens <= n_ctx + 1);
  } catch (const ferry::Error&) {
    // a bad setting, a prompt that does not fit, logits with nothing to choose, an id outside the vocabulary
  }
  return 0;
}
