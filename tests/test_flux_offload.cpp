// Flux as scheduler layers on the CPU: FluxRunner under CPU placements (explicit, and planned by the cpu-all policy)
// against the float64 reference over several calls (the prompt's txt_in kept between them), bad inputs refused by
// name, and the modulation linears declared as one-vector matmuls so that the GPU sizing reserves no GEMM scratch for
// them at T tokens.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/ggml_type.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/policies/cost_model.hpp"
#include "support/errors.hpp"
#include "support/flux_reference.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

struct Model {
  GgufFile file;
  FluxConfig config;
  FluxWeights weights;
};

Model write_and_open(const test::TempDir& dir, const char* preset, ModelFileType type) {
  MakeModelOptions options;
  options.type = type;
  options.seed = test::test_seed(1402);
  const auto path = dir.path() / (std::string(preset) + ".gguf");
  write_flux_model(find_flux_preset(preset)->config, preset, options, path);
  Model m{GgufFile::open(path), {}, {}};
  m.config = FluxConfig::from_gguf(m.file);
  m.weights = FluxWeights::from_gguf(m.file, m.config);
  return m;
}

std::vector<float> call(FluxRunner& runner, const test::FluxReferenceInputs& in, int64_t channels) {
  std::vector<float> v(static_cast<size_t>(in.n_img * channels));
  runner.forward(in.img, in.n_img, in.ids, in.timestep, in.guidance, in.y, v);
  return v;
}

}  // namespace

TEST_CASE("FluxRunner on the CPU matches the float64 reference, call after call") {
  test::TempDir dir;
  for (const char* preset : {"flux-tiny", "flux-tiny-schnell"}) {
    const std::string name = preset;
    CAPTURE(name);
    const Model m = write_and_open(dir, preset, ModelFileType::F32);
    const FluxConfig& c = m.config;
    FluxRunnerOptions o;
    o.max_tokens = 32;
    // Planned (cpu-all, no budget) and explicit placements: the same layers on the same ops.
    FluxRunner planned(c, m.weights, o);
    FluxRunner explicit_cpu(c, m.weights, o,
                            std::vector<Placement>(static_cast<size_t>(c.n_double + c.n_single + 2), Placement::CPU));
    CHECK(planned.placement_summary() == "img_in cpu; 2 double + 2 single blocks: 4 cpu; final layer cpu");
    test::FluxReferenceInputs in = test::make_flux_inputs(c, 48, 32, 7, test::test_seed(1403));
    for (FluxRunner* runner : {&planned, &explicit_cpu}) runner->set_text(in.txt, in.n_txt);
    // Two calls on one prompt: other latents, timestep and guidance; a third on a larger image.
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      if (round == 1) {
        const test::FluxReferenceInputs other = test::make_flux_inputs(c, 48, 32, 7, test::test_seed(1404));
        in.img = other.img;
        in.timestep = 0.25f;
        in.guidance = 5.0f;
      } else if (round == 2) {
        const test::FluxReferenceInputs larger = test::make_flux_inputs(c, 64, 80, 7, test::test_seed(1405));
        in.img = larger.img;
        in.n_img = larger.n_img;
        in.ids = larger.ids;
      }
      const std::vector<double> want = test::flux_reference_forward(c, m.weights, in);
      for (FluxRunner* runner : {&planned, &explicit_cpu}) {
        const double err = test::flux_relative_error(call(*runner, in, c.in_channels), want);
        MESSAGE("relative error " << err);
        CHECK(err <= 1e-4);  // the bound of test_flux_cpu: float32 everywhere, FP16 K/V on both sides
      }
    }
  }
}

TEST_CASE("FluxRunner refuses inputs of the wrong size by name") {
  test::TempDir dir;
  const Model m = write_and_open(dir, "flux-tiny", ModelFileType::Q8_0);
  FluxRunnerOptions o;
  o.max_tokens = 16;
  FluxRunner runner(m.config, m.weights, o);
  const test::FluxReferenceInputs in = test::make_flux_inputs(m.config, 48, 32, 7, test::test_seed(1406));
  std::string msg =
      test::error_of([&] { runner.set_text(std::span(in.txt).subspan(1), in.n_txt); }, ErrorCategory::INVALID_ARGUMENT);
  CHECK(msg.find("text embeddings has 447 floats, expected 448") != std::string::npos);
  runner.set_text(in.txt, in.n_txt);
  std::vector<float> v(static_cast<size_t>(in.n_img * 64));
  msg = test::error_of([&] { runner.forward(in.img, in.n_img, in.ids, 0.5f, 3.5f, std::span(in.y).first(5), v); },
                       ErrorCategory::INVALID_ARGUMENT);
  CHECK(msg.find("pooled text embedding has 5 floats, expected 32") != std::string::npos);
  msg = test::error_of([&] { runner.forward(in.img, in.n_img, std::span(in.ids).first(9), 0.5f, 3.5f, in.y, v); },
                       ErrorCategory::INVALID_ARGUMENT);
  CHECK(msg.find("position ids has 9 floats, expected 39") != std::string::npos);
  const test::FluxReferenceInputs big = test::make_flux_inputs(m.config, 64, 48, 7, test::test_seed(1407));
  msg = test::error_of([&] { runner.forward(big.img, big.n_img, big.ids, 0.5f, 3.5f, big.y, v); },
                       ErrorCategory::INVALID_ARGUMENT);
  CHECK(msg.find("do not fit steps of 16 tokens") != std::string::npos);
}

TEST_CASE("the modulation linears are one-vector matmuls: no GEMM scratch at T tokens for them") {
  test::TempDir dir;
  const Model m = write_and_open(dir, "flux-tiny", ModelFileType::Q8_0);
  const FluxConfig& c = m.config;
  const StackProfile profile = flux_stack_profile(c, m.weights, 4608, 512);
  REQUIRE(profile.layers.size() == 6);
  const int64_t h = c.hidden;
  auto shapes = [](const std::vector<QuantMatrixView>& v) {
    std::vector<std::pair<int64_t, int64_t>> out;
    for (const QuantMatrixView& w : v) out.emplace_back(w.n_cols, w.n_rows);
    return out;
  };
  using Shapes = std::vector<std::pair<int64_t, int64_t>>;
  CHECK(profile.layers[0].vector_matmuls.empty());                                    // img_in
  CHECK(shapes(profile.layers[1].vector_matmuls) == Shapes{{h, 6 * h}, {h, 6 * h}});  // img_mod, txt_mod
  CHECK(shapes(profile.layers[3].vector_matmuls) == Shapes{{h, 3 * h}});              // modulation
  CHECK(shapes(profile.layers[5].vector_matmuls) == Shapes{{h, 2 * h}});              // final adaLN
  CHECK(profile.layers[1].matmuls.size() == 8);  // qkv, proj, mlp.0, mlp.2 per stream
  CHECK(profile.layers[3].matmuls.size() == 2);  // linear1, linear2

  // A stack of the one-vector matmuls alone on the GPU needs no GEMM scratch; counted as T-token matmuls it would.
  LayerDemand vectors = profile.layers[1];
  vectors.matmuls.clear();
  StackOptions options;
  options.max_tokens = 4608;
  const std::vector<Placement> gpu = {Placement::RESIDENT};
  const GpuSizing as_vectors = gpu_sizing(std::span(&vectors, 1), gpu, options);
  CHECK(as_vectors.weight_tile_elems == 0);
  CHECK(as_vectors.activation_fp16_elems == 0);
  LayerDemand as_matrices = vectors;
  as_matrices.matmuls = as_matrices.vector_matmuls;
  as_matrices.vector_matmuls.clear();
  const GpuSizing counted = gpu_sizing(std::span(&as_matrices, 1), gpu, options);
  CHECK(counted.activation_fp16_elems == static_cast<size_t>(4608 * h));
}

TEST_CASE("the cost model prices a double block's img stream at the image tokens and its txt stream at the text") {
  test::TempDir dir;
  const Model m = write_and_open(dir, "flux-tiny", ModelFileType::Q8_0);
  const FluxConfig& c = m.config;
  const int64_t n_img = 4096, n_txt = 512, T = n_img + n_txt;
  const StackProfile profile = flux_stack_profile(c, m.weights, T, n_txt);
  REQUIRE(profile.layers.size() == 6);
  CHECK(profile.layers[0].matmul_tokens == std::vector<int64_t>{n_img});  // img_in
  CHECK(profile.layers[3].matmul_tokens == std::vector<int64_t>{T, T});   // linear1, linear2
  CHECK(profile.layers[5].matmul_tokens == std::vector<int64_t>{n_img});  // final_layer.linear
  const LayerDemand& block = profile.layers[1];
  REQUIRE(block.matmuls.size() == 8);

  // Round rates, the same for every type: the GPU reads 1e12 B/s and does 1e13 flop/s, the CPU a tenth of each.
  DeviceProfile d{"a rated GPU", true, 0};
  d.link = {{1, 1e10}};
  d.gpu_gemv_bytes_per_s = {{"Q8_0", 1e12}, {"F16", 1e12}, {"F32", 1e12}};
  d.gpu_gemm_flops = 1e13;
  d.cpu_gemv_bytes_per_s = {{"Q8_0", 1e11}, {"F16", 1e11}, {"F32", 1e11}};
  d.cpu_gemm_flops = 1e12;
  // The block's matmuls in its order: qkv, proj, mlp.0, mlp.2 of img, then of txt; each at its stream's tokens.
  // On the GPU a matrix of more than kGemvMaxTokens rows takes the GEMM path: a dequantization pass at the memory
  // rate (F16's, 1e12) and the flops at the GEMM rate rid of that pass as measured at kGemmCalibrationTokens.
  auto by_hand = [&](double read_rate, double flops, bool every_token, bool gpu) {
    double s = 0.0;
    for (size_t k = 0; k < block.matmuls.size(); ++k) {
      const QuantMatrixView& w = block.matmuls[k];
      const double tokens = every_token ? static_cast<double>(T) : k < 4 ? n_img : n_txt;
      const double bytes = static_cast<double>(row_bytes(w.type, w.n_cols)) * static_cast<double>(w.n_rows);
      const double elements = static_cast<double>(w.n_rows * w.n_cols);
      if (gpu) {
        const double dequant = (bytes + 2 * elements) / 1e12;
        s += dequant +
             2 * elements * tokens * std::max(0.0, 1 / flops - dequant / (2 * elements * kGemmCalibrationTokens));
      } else {
        s += std::max(bytes / read_rate, 2.0 * elements * tokens / flops);
      }
    }
    for (const QuantMatrixView& w : block.vector_matmuls)  // the modulation: one vector
      s += std::max(static_cast<double>(row_bytes(w.type, w.n_cols)) * static_cast<double>(w.n_rows) / read_rate,
                    2.0 * static_cast<double>(w.n_rows * w.n_cols) / flops);
    return s;
  };
  StackProfile one = profile;
  one.layers = {block};
  for (Placement p : {Placement::RESIDENT, Placement::CPU}) {
    CAPTURE(placement_name(p));
    const bool gpu = p != Placement::CPU;
    const double predicted = predict_step(one, std::vector<Placement>{p}, d, T, ScheduleShape{1}).layers[0].compute_s;
    CHECK(predicted == doctest::Approx(by_hand(gpu ? 1e12 : 1e11, gpu ? 1e13 : 1e12, false, gpu)).epsilon(1e-9));
    // Every matrix at the step's 4608 tokens (the txt stream 9x too much) would be a different price.
    CHECK(predicted < by_hand(gpu ? 1e12 : 1e11, gpu ? 1e13 : 1e12, true, gpu) * 0.95);
  }
}

TEST_CASE("the scheduler refuses step inputs beyond what it was sized for; Flux layers refuse a step without them") {
  test::TempDir dir;
  const Model m = write_and_open(dir, "flux-tiny", ModelFileType::Q8_0);
  const FluxConfig& c = m.config;
  FluxRunnerOptions o;
  o.max_tokens = 16;
  const auto layers = make_flux_layers(c, m.weights, 4);
  std::vector<const Layer*> pointers;
  for (const auto& l : layers) pointers.push_back(l.get());
  const SchedulerOptions options = flux_scheduler_options(c, o);
  CHECK(options.step_input_floats == FluxStepInputs::kHeader + 256 + 16 * 3);
  LayerScheduler scheduler(pointers, std::vector<Placement>(layers.size(), Placement::CPU), options);
  std::vector<float> x(static_cast<size_t>(16 * c.hidden), 1.0f);
  std::vector<float> inputs(options.step_input_floats + 1, 0.0f);
  StepContext step;
  step.n_tokens = 13;
  step.inputs = inputs;
  std::string msg = test::error_of([&] { scheduler.step(x.data(), step); }, ErrorCategory::INVALID_ARGUMENT);
  CHECK(msg.find("sized for " + std::to_string(options.step_input_floats)) != std::string::npos);
  step.inputs = {};
  msg = test::error_of([&] { scheduler.step(x.data(), step); }, ErrorCategory::INTERNAL);
  CHECK(msg.find("layer 'img_in': the step carries no Flux inputs") != std::string::npos);
}
