// The flux family's files: presets with the published layout (Flux.1-dev Q4_0: the exact parameter count of
// model-shapes.json and ~6.8 GB planned, not written), ComfyUI's quantization rules, a small file written and read
// back (configuration from the tensors, schnell recognised by its missing guidance_in), and the refusals: another
// architecture, a missing tensor, a misshapen tensor, each named with the file and the expected shape.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/gguf_value.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/flux/model.hpp"
#include "support/errors.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

const FluxConfig& preset(std::string_view name) {
  const FluxPreset* p = find_flux_preset(name);
  REQUIRE(p != nullptr);
  return p->config;
}

const SyntheticTensor& planned(const std::vector<SyntheticTensor>& plan, const std::string& name) {
  auto it = std::find_if(plan.begin(), plan.end(), [&](const SyntheticTensor& t) { return t.name == name; });
  REQUIRE_MESSAGE(it != plan.end(), name);
  return *it;
}

// A flux-tiny file whose tensors pass through `edit` first (drop one, reshape one).
std::filesystem::path write_edited(const test::TempDir& dir, const std::string& stem,
                                   const std::function<void(std::vector<SyntheticTensor>&)>& edit,
                                   std::string arch = "flux") {
  const FluxConfig& c = preset("flux-tiny");
  MakeModelOptions options;
  options.type = ModelFileType::Q8_0;
  options.seed = test::test_seed(14);
  std::vector<SyntheticTensor> tensors = plan_flux_tensors(c, options.type);
  edit(tensors);
  GgufWriter w(options.alignment);
  set_general_metadata(w, arch, "flux-tiny", options);
  w.set("flux.rope.axes_dim", GgufValue::array(c.axes_dim));
  add_synthetic_tensors(w, std::move(tensors), options.seed);
  const auto path = dir.path() / (stem + ".gguf");
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE("flux presets: Flux.1-dev in Q4_0 has the published parameters and ~6.8 GB, typed the ComfyUI way") {
  const std::vector<SyntheticTensor> plan = plan_flux_tensors(preset("flux-1-dev"), ModelFileType::Q4_0);
  int64_t params = 0;
  for (const SyntheticTensor& t : plan) params += t.n_elements();
  CHECK(params == 11901408320);  // model-shapes.json's params_total
  // The published Q4_0 file is 6.79 GB; the planned tensor bytes are 6.797 GB (metadata and padding not counted).
  CHECK(flux_tensor_bytes(plan) == 6797283584ull);
  CHECK(planned(plan, "double_blocks.18.img_attn.qkv.weight").type == GgmlType::Q4_0);
  CHECK(planned(plan, "single_blocks.37.linear2.weight").ne == std::vector<int64_t>{15360, 3072});
  CHECK(planned(plan, "single_blocks.0.modulation.lin.weight").type == GgmlType::Q4_0);
  CHECK(planned(plan, "img_in.weight").type == GgmlType::F16);
  CHECK(planned(plan, "guidance_in.out_layer.weight").type == GgmlType::F16);
  CHECK(planned(plan, "final_layer.adaLN_modulation.1.weight").type == GgmlType::F16);
  CHECK(planned(plan, "final_layer.linear.weight").type == GgmlType::F16);
  CHECK(planned(plan, "double_blocks.0.txt_mlp.0.bias").type == GgmlType::F32);
  CHECK(planned(plan, "single_blocks.3.norm.key_norm.scale").type == GgmlType::F32);

  const std::vector<SyntheticTensor> schnell = plan_flux_tensors(preset("flux-1-schnell"), ModelFileType::Q4_0);
  CHECK(schnell.size() + 4 == plan.size());  // no guidance_in: two weights, two biases
  CHECK(std::none_of(schnell.begin(), schnell.end(),
                     [](const SyntheticTensor& t) { return t.name.find("guidance_in") != std::string::npos; }));
  // A k-quant whose 256-element block does not divide the row falls back as llama.cpp's quantizer does.
  FluxConfig odd = preset("flux-tiny");
  odd.mlp_hidden = 1056;  // linear2's rows: 256 + 1056 = 1312 elements, not a multiple of 256
  const std::vector<SyntheticTensor> k_quant = plan_flux_tensors(odd, ModelFileType::Q4_K);
  CHECK(planned(k_quant, "single_blocks.0.linear2.weight").type == GgmlType::Q5_0);
  CHECK(planned(k_quant, "single_blocks.0.linear1.weight").type == GgmlType::Q4_K);
}

TEST_CASE("flux files: written and read back; configuration from the tensors, schnell without guidance") {
  test::TempDir dir;
  for (const char* name : {"flux-tiny", "flux-tiny-schnell"}) {
    CAPTURE(name);
    const FluxConfig& want = preset(name);
    MakeModelOptions options;
    options.type = ModelFileType::Q8_0;
    options.seed = test::test_seed(3);
    const auto path = dir.path() / (std::string(name) + ".gguf");
    write_flux_model(want, name, options, path);
    const GgufFile file = GgufFile::open(path);
    const FluxConfig c = FluxConfig::from_gguf(file);
    CHECK(c.hidden == want.hidden);
    CHECK(c.n_head == want.n_head);
    CHECK(c.head_dim == want.head_dim);
    CHECK(c.mlp_hidden == want.mlp_hidden);
    CHECK(c.n_double == want.n_double);
    CHECK(c.n_single == want.n_single);
    CHECK(c.in_channels == 64);
    CHECK(c.context_in_dim == want.context_in_dim);
    CHECK(c.vec_in_dim == want.vec_in_dim);
    CHECK(c.timestep_dim == 256);
    CHECK(c.has_guidance == want.has_guidance);
    CHECK(c.axes_dim == want.axes_dim);
    const FluxWeights w = FluxWeights::from_gguf(file, c);
    CHECK(w.double_blocks.size() == 2);
    CHECK(w.single_blocks.size() == 2);
    CHECK(w.double_blocks[1].txt.qkv.weight.n_rows == 3 * c.hidden);
    CHECK(w.double_blocks[1].txt.qkv.weight.type == GgmlType::Q8_0);
    CHECK(w.single_blocks[0].linear1.weight.n_rows == 3 * c.hidden + c.mlp_hidden);
    CHECK(w.img_in.weight.type == GgmlType::F16);
    CHECK((w.guidance_in.in_layer.weight.data != nullptr) == want.has_guidance);
    CHECK(w.final_linear.weight.n_rows == 64);
  }
}

TEST_CASE("flux files: another architecture, a missing or misshapen tensor are refused by name") {
  test::TempDir dir;
  const auto llama = write_edited(
      dir, "llama", [](auto&) {}, "llama");
  std::string msg = test::error_of([&] { FluxConfig::from_gguf(GgufFile::open(llama)); }, ErrorCategory::UNSUPPORTED);
  CHECK(msg.find("architecture 'llama' is not flux") != std::string::npos);

  for (const std::string name :
       {"double_blocks.1.txt_attn.norm.key_norm.scale", "single_blocks.0.linear2.bias", "final_layer.linear.weight",
        "txt_in.weight", "vector_in.out_layer.weight", "double_blocks.0.img_mlp.2.weight"}) {
    CAPTURE(name);
    const auto path = write_edited(dir, "missing", [&](std::vector<SyntheticTensor>& t) {
      t.erase(std::remove_if(t.begin(), t.end(), [&](const SyntheticTensor& s) { return s.name == name; }), t.end());
    });
    msg = test::error_of(
        [&] {
          const GgufFile file = GgufFile::open(path);
          FluxWeights::from_gguf(file, FluxConfig::from_gguf(file));
        },
        ErrorCategory::FORMAT);
    CHECK(msg.find("missing.gguf") != std::string::npos);
    CHECK(msg.find("'" + name + "' is missing") != std::string::npos);
  }
  {
    const auto path = write_edited(dir, "misshapen", [](std::vector<SyntheticTensor>& t) {
      for (SyntheticTensor& s : t)
        if (s.name == "single_blocks.1.modulation.lin.weight") s.ne = {256, 512};
    });
    msg = test::error_of(
        [&] {
          const GgufFile file = GgufFile::open(path);
          FluxWeights::from_gguf(file, FluxConfig::from_gguf(file));
        },
        ErrorCategory::FORMAT);
    CHECK(msg.find("misshapen.gguf") != std::string::npos);
    CHECK(msg.find("'single_blocks.1.modulation.lin.weight' has shape [256, 512], expected [256, 768]") !=
          std::string::npos);
  }
  {
    const auto path = write_edited(dir, "bad_heads", [](std::vector<SyntheticTensor>& t) {
      for (SyntheticTensor& s : t)
        if (s.name == "double_blocks.0.img_attn.norm.query_norm.scale") s.ne = {48};
    });
    msg = test::error_of([&] { FluxConfig::from_gguf(GgufFile::open(path)); }, ErrorCategory::FORMAT);
    CHECK(msg.find("48") != std::string::npos);
  }
  {  // two RoPE axes summing to head_dim: no position ids exist for them
    const auto source = write_edited(dir, "two_axes_source", [](auto&) {});
    const GgufFile source_file = GgufFile::open(source);  // the writer reads its tensors from the mapping
    GgufWriter w = GgufWriter::copy_of(source_file);
    w.set("flux.rope.axes_dim", GgufValue::array(std::vector<int32_t>{32, 32}));
    const auto path = dir.path() / "two_axes.gguf";
    w.write(path);
    msg = test::error_of([&] { FluxConfig::from_gguf(GgufFile::open(path)); }, ErrorCategory::FORMAT);
    CHECK(msg.find("two_axes.gguf") != std::string::npos);
    CHECK(msg.find("RoPE has 2 axes (flux.rope.axes_dim), expected 3") != std::string::npos);
  }
  {  // a stream narrower than the packed latents it starts from would be written past its rows
    FluxConfig c = preset("flux-tiny");
    c.n_head = 1;
    c.head_dim = 32;
    c.hidden = 32;
    c.axes_dim = {8, 12, 12};
    CHECK_THROWS_WITH_AS(c.validate("narrow"), doctest::Contains("hidden 32 is narrower than in_channels 64"), Error);
  }
}
