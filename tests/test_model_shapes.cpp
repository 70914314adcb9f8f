// The llama presets against the published shapes in ../shared/data/model-shapes.json. An executable of its own so
// that a checkout without ../shared reports it skipped (exit 77) rather than passed; FERRY_REQUIRE_SHARED_DATA=1
// (scripts/test.sh, CI) makes the missing file a failure.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>

#include "ferry/models/model_presets.hpp"
#include "support/skip.hpp"

using namespace ferry;

TEST_CASE("llama presets match shared/data/model-shapes.json") {
  if (!test::require_shared_data(FERRY_MODEL_SHAPES_JSON)) return;
  std::ifstream in(FERRY_MODEL_SHAPES_JSON);
  REQUIRE(in.good());
  const auto json = nlohmann::json::parse(in);
  size_t compared = 0;
  for (const auto& [name, s] : json.at("llama").items()) {
    CAPTURE(name);
    const LlamaShape* p = find_llama_preset(name);
    REQUIRE(p != nullptr);
    CHECK(p->n_layer == s.at("n_layer").get<int64_t>());
    CHECK(p->n_embd == s.at("n_embd").get<int64_t>());
    CHECK(p->n_ff == s.at("n_ff").get<int64_t>());
    CHECK(p->n_head == s.at("n_head").get<int64_t>());
    CHECK(p->n_head_kv == s.at("n_head_kv").get<int64_t>());
    CHECK(p->n_vocab == s.at("n_vocab").get<int64_t>());
    CHECK(p->n_ctx_train == s.at("n_ctx_train").get<int64_t>());
    CHECK(p->rope_freq_base == s.at("rope_freq_base").get<float>());
    CHECK(p->rms_eps == s.at("rms_eps").get<float>());
    ++compared;
  }
  CHECK(compared == 5);
}
