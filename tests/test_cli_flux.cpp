// `ferry flux-step` as a user runs it: the built-in Flux-shaped model in a private FERRY_CACHE_DIR (what it prints,
// reproducible latents), latents from --inputs checked against the float64 reference sampled with the published
// schedule (so the schedule, the shift and the Euler update are checked, not only the model), and every refusal:
// image sizes that are not multiples of 16 (exit 2, naming the nearest valid sizes), input files of the wrong size
// (exit 1, naming the file, its size and the size expected), a model that is not Flux.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/models/flux/model.hpp"
#include "support/ferry_process.hpp"
#include "support/flux_reference.hpp"
#include "support/random.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::test;

namespace {

void write_floats(const fs::path& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
}

std::vector<float> read_floats(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v(fs::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

fs::path make_flux_tiny(const fs::path& dir, const std::string& type) {
  const fs::path path = dir / ("flux-tiny-" + type + ".gguf");
  const Result r =
      run_ferry({"make-model", "--preset", "flux-tiny", "--type", type, "--seed", "5", "-o", path.string()}, dir);
  REQUIRE_MESSAGE(r.status == 0, r.err);
  return path;
}

}  // namespace

TEST_CASE("ferry flux-step without a model samples the built-in model, reproducibly") {
  TempDir dir;
  RunSpec spec;
  spec.env = {{"FERRY_CACHE_DIR", (dir.path() / "cache").string()}};
  const std::vector<std::string> args = {
      "flux-step", "--image", "64x48", "--steps", "3", "--policy", "cpu-all", "--out", (dir.path() / "a").string()};
  const Result r = run_ferry(args, dir.path(), spec);
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.err, "generating the built-in Flux-shaped model"), r.err);
  CHECK(contains(r.out, "image: 64x48: 12 image + 64 text tokens"));
  CHECK(contains(r.out, "step 3/3: t "));
  CHECK(contains(r.out, "seconds per step: mean "));
  CHECK(contains(r.out, "placement: img_in cpu; 2 double + 4 single blocks: 6 cpu; final layer cpu"));
  CHECK(contains(r.out, "device memory: none"));
  CHECK(contains(r.out, "out.f32: [12, 64] float32"));
  const std::vector<float> first = read_floats(dir.path() / "a" / "out.f32");
  REQUIRE(first.size() == 12 * 64);
  for (float v : first) REQUIRE(std::isfinite(v));
  std::vector<std::string> again = args;
  again.back() = (dir.path() / "b").string();
  const Result second = run_ferry(again, dir.path(), spec);
  REQUIRE_MESSAGE(second.status == 0, second.err);
  CHECK_FALSE(contains(second.err, "generating"));  // cached
  CHECK(read_floats(dir.path() / "b" / "out.f32") == first);
}

TEST_CASE("ferry flux-step --inputs: the latents match the float64 reference sampled with Flux.1-dev's schedule") {
  TempDir dir;
  const fs::path model = make_flux_tiny(dir.path(), "f32");
  const GgufFile file = GgufFile::open(model);
  const FluxConfig c = FluxConfig::from_gguf(file);
  const FluxWeights w = FluxWeights::from_gguf(file, c);
  FluxReferenceInputs in = make_flux_inputs(c, 80, 48, 7, 1415);  // 5 x 3 patches
  const fs::path inputs = dir.path() / "in";
  fs::create_directories(inputs);
  write_floats(inputs / "img.f32", in.img);
  write_floats(inputs / "txt.f32", in.txt);
  write_floats(inputs / "vec.f32", in.y);
  const Result r =
      run_ferry({"flux-step", model.string(), "--image", "80x48", "--steps", "2", "--guidance", "4", "--inputs",
                 inputs.string(), "--out", (dir.path() / "out").string(), "--policy", "cpu-all"},
                dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  // get_schedule(2, 15): linspace(1, 0, 3) through time_shift(mu, 1, t), mu = 0.5 + (15 - 256) * 0.65 / 3840.
  const double mu = 0.5 + (15.0 - 256.0) * (1.15 - 0.5) / (4096.0 - 256.0);
  const double t_mid = std::exp(mu) / (std::exp(mu) + (1.0 / 0.5 - 1.0));
  const double ts[] = {1.0, t_mid, 0.0};
  std::vector<double> x(in.img.begin(), in.img.end());
  in.guidance = 4.0f;
  for (int i = 0; i < 2; ++i) {
    in.img.assign(x.begin(), x.end());
    in.timestep = static_cast<float>(ts[i]);
    const std::vector<double> v = flux_reference_forward(c, w, in);
    for (size_t k = 0; k < x.size(); ++k) x[k] += (ts[i + 1] - ts[i]) * v[k];
  }
  const std::vector<float> got = read_floats(dir.path() / "out" / "out.f32");
  REQUIRE(got.size() == x.size());
  // Each call within test_flux_cpu's 1e-4; the timesteps the program embeds are float32 (the reference's tensor
  // dtype), which moves the sinusoid of t * 1000 by ~1e-4 rad: 2e-4 in all.
  CHECK(flux_relative_error(got, x) <= 2e-4);
}

TEST_CASE("ferry flux-step refuses bad sizes, bad input files and other models by name") {
  TempDir dir;
  const fs::path model = make_flux_tiny(dir.path(), "q8_0");
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"flux-step", model.string(), "--policy", "cpu-all", "--steps", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_ferry(args, dir.path());
  };
  Result r = run({"--image", "1000x1000"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err,
                         "must be multiples of 16; the nearest valid size is 1008x1008 (rounded down 992x992, "
                         "up 1008x1008)"),
                r.err);
  r = run({"--image", "100x40"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "the nearest valid size is 96x48 (rounded down 96x32, up 112x48)"), r.err);
  r = run({"--image", "wide"});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--image"));

  // 48 x 32: 6 image tokens; flux-tiny's text rows are 64 wide, its pooled vector 32.
  const fs::path inputs = dir.path() / "in";
  fs::create_directories(inputs);
  write_floats(inputs / "img.f32", random_floats(6 * 64, 1));
  write_floats(inputs / "txt.f32", random_floats(5 * 64, 2));
  write_floats(inputs / "vec.f32", random_floats(32, 3));
  REQUIRE(run({"--image", "48x32", "--inputs", inputs.string()}).status == 0);
  write_floats(inputs / "img.f32", random_floats(7 * 64, 1));
  r = run({"--image", "48x32", "--inputs", inputs.string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "img.f32: 1792 bytes, expected 1536 (6 x 64 float32)"), r.err);
  write_floats(inputs / "img.f32", random_floats(6 * 64, 1));
  write_floats(inputs / "txt.f32", random_floats(5 * 64 + 3, 2));
  r = run({"--image", "48x32", "--inputs", inputs.string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "txt.f32: 1292 bytes, expected a positive multiple of 256"), r.err);
  write_floats(inputs / "txt.f32", random_floats(5 * 64, 2));
  write_floats(inputs / "vec.f32", random_floats(31, 3));
  r = run({"--image", "48x32", "--inputs", inputs.string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "vec.f32: 124 bytes, expected 128 (1 x 32 float32)"), r.err);
  fs::remove(inputs / "vec.f32");
  r = run({"--image", "48x32", "--inputs", inputs.string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "vec.f32"), r.err);

  const fs::path llama = make_tiny_model(dir.path());
  r = run_ferry({"flux-step", llama.string(), "--image", "48x32"}, dir.path());
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "architecture 'llama' is not flux"), r.err);
  write_floats(dir.path() / "a-file", {1.0f});
  r = run({"--image", "48x32", "--out", (dir.path() / "a-file").string()});
  CHECK(r.status == 2);
  CHECK(contains(r.err, "--out"));
}
