// The Flux block over CpuOps against the float64 reference (support/flux_reference.cpp): one model call of flux-tiny
// (2 double + 2 single blocks, width 256) read back from a written file, at odd token counts, with and without
// guidance_in (dev and schnell layouts).
//
// Tolerances. F32 weights: relative error <= 1e-4 (the bound): the CPU path computes in float32 with float32
// accumulation, K and V rounded to FP16 on both sides, so what remains is float32 rounding through ~40 ops (measured
// ~1e-6). Q8_0 weights: the weights are the same on both sides (the reference dequantizes them), but the CPU matmul
// quantizes its activations to 8 bits for the integer dot product where llama.cpp's kernels do; ~1e-2 relative error
// per matmul at worst, 3e-2 overall is the bound (measured below 1e-2).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/kernels/cpu/cpu_ops.hpp"
#include "ferry/models/flux/block.hpp"
#include "ferry/models/flux/maker.hpp"
#include "support/flux_reference.hpp"
#include "support/random.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

// One model call with every op on the CPU, block by block in stack order.
std::vector<float> cpu_forward(const FluxConfig& c, const FluxWeights& w, const test::FluxReferenceInputs& in) {
  CpuOps ops;
  const int64_t h = c.hidden, T = in.n_txt + in.n_img;
  std::vector<float> x(static_cast<size_t>(T * h), 0.0f), silu_vec(static_cast<size_t>(h));
  flux_text_input(ops, c, w.txt_in, in.txt.data(), in.n_txt, x.data());
  for (int64_t t = 0; t < in.n_img; ++t)
    for (int64_t i = 0; i < c.in_channels; ++i)
      x[static_cast<size_t>((in.n_txt + t) * h + i)] = in.img[static_cast<size_t>(t * c.in_channels + i)];
  flux_conditioning(ops, c, w, in.timestep, in.guidance, in.y.data(), silu_vec.data());
  const FluxStepView step{in.n_txt, in.n_img, silu_vec.data(), in.ids.data()};
  std::vector<float> workspace(FluxBlockBuffers::workspace_floats(c, T, Device::CPU));
  const FluxBlockBuffers b = FluxBlockBuffers::carve(c, T, Device::CPU, workspace.data());
  std::vector<float> scratch(static_cast<size_t>(in.n_img * h + 2 * h));
  flux_input_forward(ops, c, w.img_in, step, x.data(), scratch.data());
  for (const FluxDoubleWeights& d : w.double_blocks) flux_double_block_forward(ops, c, d, step, b, x.data());
  for (const FluxSingleWeights& s : w.single_blocks) flux_single_block_forward(ops, c, s, step, b, x.data());
  std::vector<float> out(static_cast<size_t>(in.n_img * c.out_channels()));
  flux_final_forward(ops, c, w.final_mod, w.final_linear, step, x.data(), scratch.data(), out.data());
  return out;
}

struct Case {
  const char* preset;
  ModelFileType type;
  double bound;
};

}  // namespace

TEST_CASE("flux-tiny on the CPU matches the float64 reference") {
  const Case cases[] = {{"flux-tiny", ModelFileType::F32, 1e-4},
                        {"flux-tiny-schnell", ModelFileType::F32, 1e-4},
                        {"flux-tiny", ModelFileType::Q8_0, 3e-2}};
  test::TempDir dir;
  for (const Case& k : cases) {
    const std::string preset = k.preset;
    CAPTURE(preset);
    const std::string type(model_file_type_name(k.type));
    CAPTURE(type);
    MakeModelOptions options;
    options.type = k.type;
    options.seed = test::test_seed(1400);
    const auto path = dir.path() / (std::string(k.preset) + ".gguf");
    write_flux_model(find_flux_preset(k.preset)->config, k.preset, options, path);
    const GgufFile file = GgufFile::open(path);
    const FluxConfig c = FluxConfig::from_gguf(file);
    const FluxWeights w = FluxWeights::from_gguf(file, c);
    // 48 x 32 pixels: 3 x 2 patches, 7 text tokens (13 in all); 80 x 48: 5 x 3 patches, 4 text tokens (19).
    for (auto [width, height, n_txt] : {std::tuple{48, 32, 7}, {80, 48, 4}}) {
      CAPTURE(width);
      CAPTURE(height);
      const test::FluxReferenceInputs in = test::make_flux_inputs(c, width, height, n_txt, test::test_seed(1401));
      const std::vector<double> want = test::flux_reference_forward(c, w, in);
      const std::vector<float> got = cpu_forward(c, w, in);
      REQUIRE(got.size() == want.size());
      const double err = test::flux_relative_error(got, want);
      MESSAGE("relative error " << err);
      CHECK(err <= k.bound);
    }
  }
}
