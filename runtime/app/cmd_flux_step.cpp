// `ferry flux-step [MODEL] --vram SIZE --image WxH [--steps N] [--guidance G] [--seed S] [--inputs DIR] [--out DIR]
// [--policy P]`: Flux.1's flow-matching Euler sampler over N steps on a Flux transformer (a ComfyUI-format GGUF file,
// or without MODEL the built-in Flux-shaped model), every model call under the layer scheduler within the VRAM budget.
// Prints seconds per step, where the layers ran and the peak device memory; with --out, writes the final latents.
//
// Files (raw float32, native byte order, row-major), in --inputs DIR (else generated from --seed: N(0, 1) each):
//   img.f32  [N_img, 64]              packed latents, N_img = (W / 16) x (H / 16), each row the 16 channels x 2 x 2
//                                      patch of the reference's rearrange "c (h ph) (w pw) -> (h w) (c ph pw)"
//   txt.f32  [N_txt, context_in_dim]  T5 embeddings (N_txt = the file's rows; 4096 wide for Flux.1)
//   vec.f32  [vec_in_dim]             pooled CLIP embedding (768 for Flux.1)
// and --out DIR/out.f32 has img.f32's layout: the latents after the last step.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/default_model.hpp"
#include "ferry/models/flux/block.hpp"
#include "ferry/models/flux/model.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/models/flux/sampler.hpp"
#include "flux_inputs.hpp"
#include "image_flag.hpp"
#include "model_command.hpp"
#include "override_flags.hpp"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

struct FluxStepFlags {
  std::string model;
  std::string vram = "8GiB";
  std::string image;
  int steps = 4;
  float guidance = 3.5f;
  uint64_t seed = 0;
  int64_t txt_tokens = 64;
  std::string inputs;
  std::string out;
  std::string policy = "resident-stream";
  int prefetch = 1;
  std::string trace;
  OverrideFlags overrides;
};

struct Inputs {
  std::vector<float> img, txt, vec;
  int64_t n_txt = 0;
  std::string source;
};

Inputs load_inputs(const FluxStepFlags& f, const FluxConfig& c, int64_t n_img) {
  Inputs in;
  if (!f.inputs.empty()) {
    const fs::path dir(f.inputs);
    in.img = read_f32_file(dir / "img.f32", static_cast<size_t>(c.in_channels), static_cast<size_t>(n_img));
    in.txt = read_f32_file(dir / "txt.f32", static_cast<size_t>(c.context_in_dim), 0);
    in.vec = read_f32_file(dir / "vec.f32", static_cast<size_t>(c.vec_in_dim), 1);
    in.n_txt = static_cast<int64_t>(in.txt.size()) / c.context_in_dim;
    in.source = "read from " + f.inputs;
    return in;
  }
  in.n_txt = f.txt_tokens;
  GeneratedFluxInputs generated = generate_flux_inputs(c, n_img, in.n_txt, f.seed);
  in.img = std::move(generated.img);
  in.txt = std::move(generated.txt);
  in.vec = std::move(generated.vec);
  in.source = "generated from seed " + std::to_string(f.seed);
  return in;
}

int run_flux_step(const FluxStepFlags& f) {
  // Every flag first: a typo costs no model load.
  const ImageSize image = image_flag(f.image);
  uint64_t vram = vram_flag(f.vram);
  const Policy policy = policy_flag(f.policy);
  std::vector<PlacementOverride> overrides;
  std::optional<PlanFile> plan_file;
  apply_override_flags(f.overrides, overrides, plan_file, vram);
  if (f.steps < 1 || f.steps > 1000) bad_flag("--steps", std::to_string(f.steps) + " is outside 1..1000");
  if (!std::isfinite(f.guidance)) bad_flag("--guidance", "must be a finite number");
  if (f.txt_tokens < 1 || f.txt_tokens > 4096)
    bad_flag("--txt-tokens", std::to_string(f.txt_tokens) + " is outside 1..4096");
  std::error_code ec;
  if (!f.inputs.empty() && !fs::is_directory(f.inputs, ec))
    fail(ErrorCategory::IO, f.inputs + ": not a folder (--inputs: the folder of img.f32, txt.f32 and vec.f32)");
  if (!f.out.empty()) {
    if (fs::exists(f.out, ec) && !fs::is_directory(f.out, ec))
      bad_flag("--out", quote_name(f.out) + " is a file; --out names the folder for out.f32");
    fs::create_directories(f.out, ec);
    if (ec) fail(ErrorCategory::IO, f.out + ": cannot create the folder (--out): " + ec.message());
    check_output_path("--out", (fs::path(f.out) / "out.f32").string());
  }
  check_output_path("--trace", f.trace);

  const std::string path = f.model.empty() ? ensure_default_flux_model([](const std::string& line) {
                                               std::fprintf(stderr, "ferry: %s\n", line.c_str());
                                             }).string()
                                           : f.model;
  const GgufFile file = GgufFile::open(path);
  const FluxConfig config = FluxConfig::from_gguf(file);
  const FluxWeights weights = FluxWeights::from_gguf(file, config);
  const int64_t rows = image.height / 16, cols = image.width / 16, n_img = rows * cols;
  Inputs in = load_inputs(f, config, n_img);
  const std::vector<float> ids = flux_position_ids(in.n_txt, rows, cols);

  FluxRunnerOptions o;
  o.max_tokens = in.n_txt + n_img;
  o.text_tokens = in.n_txt;
  o.vram_budget = vram;
  o.policy = policy;
  o.prefetch_depth = f.prefetch;
  o.trace_path = f.trace;
  o.overrides = overrides;
  o.plan_file = plan_file;
  note_when_cpu_only(policy);
  FluxRunner runner(config, weights, o);
  if (!runner.plan_note().empty()) std::fprintf(stderr, "ferry: %s\n", runner.plan_note().c_str());
  runner.set_text(in.txt, in.n_txt);

  const bool shift = config.has_guidance;  // schnell samples the unshifted schedule, as the reference does
  const std::vector<float> timesteps = flux_timesteps(f.steps, n_img, shift);
  std::printf("model: %s (flux, %" PRId64 " double + %" PRId64 " single blocks, width %" PRId64 "%s)\n", path.c_str(),
              config.n_double, config.n_single, config.hidden,
              config.has_guidance ? ", guidance" : ", no guidance: schnell");
  std::printf("image: %s: %" PRId64 " image + %" PRId64 " text tokens; inputs %s\n",
              size_text(image.width, image.height).c_str(), n_img, in.n_txt, in.source.c_str());
  std::printf("schedule: %d steps%s, mu %.3f\n", f.steps, shift ? " shifted" : " unshifted", flux_schedule_mu(n_img));
  std::fflush(stdout);
  std::vector<double> seconds;
  flux_sample(runner, in.img, n_img, ids, in.vec, timesteps, f.guidance,
              [&](int step, float t, float t_next, double s) {
                seconds.push_back(s);
                std::printf("step %d/%d: t %.4f -> %.4f, %.3f s\n", step + 1, f.steps, static_cast<double>(t),
                            static_cast<double>(t_next), s);
                std::fflush(stdout);
              });
  for (float v : in.img)
    if (!std::isfinite(v))
      fail(ErrorCategory::FORMAT, path +
                                      ": the latents are not finite after sampling (the weights or inputs hold "
                                      "non-finite values)");
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  double total = 0;
  for (double s : seconds) total += s;
  std::printf("seconds per step: mean %.4f, median %.4f, first %.4f\n", total / static_cast<double>(seconds.size()),
              sorted[sorted.size() / 2], seconds.front());
  std::printf("placement: %s (%s)\n", runner.placement_summary().c_str(),
              placement_origin(f.overrides, f.vram, f.policy, vram).c_str());
  write_stdout(device_memory_line(runner.scheduler().memory()));
  if (!f.out.empty()) {
    const fs::path out = fs::path(f.out) / "out.f32";
    write_f32_file(out, in.img);
    std::printf("wrote %s: [%" PRId64 ", %" PRId64 "] float32\n", out.string().c_str(), n_img, config.in_channels);
  }
  return 0;
}

}  // namespace

Action add_flux_step_command(CLI::App& app) {
  auto o = std::make_shared<FluxStepFlags>();
  CLI::App* cmd = app.add_subcommand(
      "flux-step",
      "Sample Flux latents with the flow-matching Euler sampler under a VRAM budget (default: a built-in small "
      "Flux-shaped model)");
  cmd->footer(
      "Input files (--inputs DIR; raw float32, native byte order, row-major):\n"
      "  img.f32  [N_img, 64]: packed latents, N_img = (W/16) * (H/16), rows (c ph pw) of each 2x2 latent patch\n"
      "  txt.f32  [N_txt, context_in_dim]: text embeddings (T5; 4096 wide for Flux.1); N_txt = its rows\n"
      "  vec.f32  [vec_in_dim]: pooled embedding (CLIP; 768 for Flux.1)\n"
      "Without --inputs they are drawn from N(0, 1) with --seed (--txt-tokens rows of text).\n"
      "--out DIR writes DIR/out.f32 with img.f32's layout: the latents after the last step.");
  cmd->add_option("model", o->model, "Flux GGUF file, ComfyUI layout (omit for the built-in small model)");
  CLI::Option* vram =
      cmd->add_option("--vram", o->vram, "VRAM budget: everything ferry holds on the GPU (8GiB, 7.5G, 512MiB)")
          ->capture_default_str();
  cmd->add_option("--image", o->image, "Image size in pixels, WxH, multiples of 16 (e.g. 1024x1024)")->required();
  cmd->add_option("--steps", o->steps, "Sampling steps")->capture_default_str();
  cmd->add_option("--guidance", o->guidance, "Guidance (models with guidance_in)")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of generated inputs")->capture_default_str();
  cmd->add_option("--txt-tokens", o->txt_tokens, "Text tokens of generated inputs")->capture_default_str();
  cmd->add_option("--inputs", o->inputs, "Folder with img.f32, txt.f32 and vec.f32");
  cmd->add_option("--out", o->out, "Folder to write out.f32 (the final latents) into");
  CLI::Option* policy =
      cmd->add_option("--policy", o->policy, "resident-first | resident-stream | stream-all | cpu-all | auto")
          ->capture_default_str();
  add_override_flags(*cmd, o->overrides, vram, policy);
  cmd->add_option("--prefetch", o->prefetch, "Streamed layers copied ahead of compute (1-4)")->check(CLI::Range(1, 4));
  cmd->add_option("--trace", o->trace, "Write the copy/compute/CPU spans as Chrome trace JSON to this file");
  return [o] { return run_flux_step(*o); };
}

}  // namespace ferry::cli
