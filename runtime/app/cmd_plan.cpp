// `ferry plan [MODEL] [--vram SIZE] [--policy P] [--ctx N] [--prompt N] [--gen N] [--device-profile FILE] [--json]`:
// where `ferry run` with the same flags would put every layer and the memory that takes, without running anything. Only
// the file's header is read (no weight is touched, so planning a 70B model takes milliseconds), and with
// --device-profile the plan is made for another machine's card (a DeviceProfile JSON: name, has_gpu, context_bytes).
//
// The JSON (--json) is one object:
//   {"model", "architecture", "policy" (the policy asked for, or "plan file FILE"), "plan_policy" (the one applied:
//    cpu-all without a GPU), "budget_bytes", "context", "max_tokens", "device": {"name", "has_gpu", "context_bytes"},
//    "summary", "memory": {"uses_device", "total_bytes", "arena_bytes", "required_budget", "minimum_budget",
//               "categories": {"context": bytes, "resident_weights": ..., ...}},
//    "host": {"kv_cache", "streamed_pool", "buffers", "total_bytes"},
//    "phased_cpu_max_tokens" (steps of at most this many tokens run the phased layers on the CPU),
//    "layers": [{"index", "name", "placement", "prompt_placement" (where it runs in a step of max_tokens),
//               "decode_placement" (in a one-token step): phased resolves to streamed / cpu, the others are
//               themselves, "weight_bytes", "kv_cache_bytes"}], "note" (why the plan is not the
//    policy asked for, or ""), "predicted": null without measured rates, else {"prompt_tokens", "generated_tokens",
//    "prompt_tokens_per_s", "generate_tokens_per_s", "total_s", "decode_step_layers": [{"compute_s", "copy_s"}]}}
// With measured rates (`ferry calibrate` on this machine, or a calibrated --device-profile) the cost model's
// predictions for a workload of --prompt tokens then --gen generated ones are printed too.
//
// A Flux file (general.architecture = flux) is planned as `ferry flux-step` runs it: steps of the --image's tokens
// ((W / 16) x (H / 16), 1024x1024 by default) and --txt text tokens (512), the prediction in seconds per step. Its JSON
// has the same keys, less "context", plus "image": {"width", "height"}, "image_tokens", "text_tokens", and
// "predicted": null or {"image_tokens", "text_tokens", "seconds_per_step", "step_layers": [{"compute_s", "copy_s"}]}.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include "commands.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/flux/runner.hpp"
#include "ferry/models/llama/profile.hpp"
#include "ferry/models/llama/runner.hpp"
#include "ferry/models/this_device.hpp"
#include "ferry/offload/gpu.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/policies/cost_model.hpp"
#include "image_flag.hpp"
#include "model_command.hpp"
#include "override_flags.hpp"

namespace ferry::cli {
namespace {

struct PlanFlags {
  std::string model;
  std::string vram = "8GiB";
  std::string policy = "resident-stream";
  int64_t n_ctx = 0;
  bool force_ctx = false;
  int prefetch = 1;
  std::string device_profile;
  int64_t prompt_tokens = 512;
  int64_t generated_tokens = 128;
  bool json = false;
  std::string image = "1024x1024";  // Flux files only
  int64_t text_tokens = 512;        // Flux files only
  bool image_given = false, text_given = false;
  OverrideFlags overrides;
};

DeviceProfile read_device_profile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad_flag("--device-profile", quote_name(path) + " cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return DeviceProfile::from_json(text.str());
  } catch (const Error& e) {
    fail(ErrorCategory::FORMAT, path + ": " + e.what());
  }
}

std::string snake_case(std::string_view name) {
  std::string s(name);
  for (char& c : s)
    if (c == ' ' || c == '-') c = '_';
  return s;
}

// The cost model's figures for the plan; nullopt when the profile has no measured rates.
std::optional<RunPrediction> prediction(const LlamaRunnerOptions& options, const DeviceProfile& device,
                                        const Plan& plan, const StackProfile& stack) {
  if (!device.has_rates()) return std::nullopt;
  return predict_run(stack, plan.placements, device, options.planned_prompt_tokens, options.planned_generated_tokens,
                     {options.prefetch_depth, plan.phased_cpu_max_tokens});
}

// null without measured rates; else the workload and the predicted rates, and each layer's decode-step times.
nlohmann::json predicted_json(const LlamaRunnerOptions& options, const DeviceProfile& device, const Plan& plan,
                              const StackProfile& stack) {
  const std::optional<RunPrediction> run = prediction(options, device, plan, stack);
  if (!run) return nullptr;
  const StepPrediction token =
      predict_step(stack, plan.placements, device, 1, {options.prefetch_depth, plan.phased_cpu_max_tokens});
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerTime& t : token.layers) layers.push_back({{"compute_s", t.compute_s}, {"copy_s", t.copy_s}});
  return {{"prompt_tokens", options.planned_prompt_tokens},
          {"generated_tokens", options.planned_generated_tokens},
          {"prompt_tokens_per_s", run->prompt_tokens_per_s},
          {"generate_tokens_per_s", run->generate_tokens_per_s},
          {"total_s", run->total_s},
          {"decode_step_layers", layers}};
}

// The keys every architecture's plan JSON has; each adds its own (the workload, "predicted").
nlohmann::json common_plan_json(const PlanFlags& f, const std::string& model, const std::string& architecture,
                                uint64_t budget, int64_t max_tokens, const DeviceProfile& device, const Plan& plan,
                                const StackProfile& stack) {
  nlohmann::json categories = nlohmann::json::object();
  for (size_t c = 0; c < kMemoryCategoryCount; ++c)
    categories[snake_case(memory_category_name(static_cast<MemoryCategory>(c)))] = plan.memory.bytes[c];
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < stack.layers.size(); ++i)
    layers.push_back(
        {{"index", i},
         {"name", stack.layers[i].name},
         {"placement", placement_name(plan.placements[i])},
         {"prompt_placement",
          placement_name(placement_for_step(plan.placements[i], max_tokens, plan.phased_cpu_max_tokens))},
         {"decode_placement", placement_name(placement_for_step(plan.placements[i], 1, plan.phased_cpu_max_tokens))},
         {"weight_bytes", stack.layers[i].weight_bytes},
         {"kv_cache_bytes", stack.layers[i].kv_cache_bytes}});
  return {{"model", model},
          {"architecture", architecture},
          {"policy", f.overrides.plan.empty() ? f.policy : "plan file " + f.overrides.plan},
          {"plan_policy", policy_name(plan.policy)},
          {"budget_bytes", budget},
          {"max_tokens", max_tokens},
          {"phased_cpu_max_tokens", plan.phased_cpu_max_tokens},
          {"device", {{"name", device.name}, {"has_gpu", device.has_gpu}, {"context_bytes", device.context_bytes}}},
          {"summary", plan.summary()},
          {"memory",
           {{"uses_device", plan.memory.uses_device},
            {"total_bytes", plan.memory.total()},
            {"arena_bytes", plan.memory.arena_bytes()},
            {"required_budget", plan.memory.required_budget},
            {"minimum_budget", plan.memory.minimum_budget},
            {"categories", categories}}},
          {"host",
           {{"kv_cache", plan.host.kv_cache},
            {"streamed_pool", plan.host.streamed_pool},
            {"buffers", plan.host.buffers},
            {"total_bytes", plan.host.total()}}},
          {"layers", layers},
          {"note", plan.note}};
}

nlohmann::json plan_json(const PlanFlags& f, const std::string& model, const LlamaConfig& config,
                         const LlamaRunnerOptions& options, const DeviceProfile& device, const Plan& plan,
                         const StackProfile& stack) {
  nlohmann::json j = common_plan_json(f, model, std::string(llama_arch_name(config.arch)), options.vram_budget,
                                      options.max_tokens, device, plan, stack);
  j["context"] = options.n_ctx;
  j["predicted"] = predicted_json(options, device, plan, stack);
  return j;
}

// The per-layer table (with each layer's predicted times when there are any), the device and host memory, the note.
// "prompt" and "decode" say where a layer runs in a step of max_tokens and of one token: a phased layer streams in
// the one and runs on the CPU in the other.
std::string layers_and_memory_text(const Plan& plan, const StackProfile& stack, const StepPrediction* step) {
  std::string out;
  char line[240];
  std::snprintf(line, sizeof line, "%5s  %-16s %-9s %-9s %-9s %12s %12s%s\n", "layer", "name", "placement", "prompt",
                "decode", "weights", "KV cache", step ? "   compute s     copy s" : "");
  out += line;
  for (size_t i = 0; i < stack.layers.size(); ++i) {
    const LayerDemand& l = stack.layers[i];
    const Placement p = plan.placements[i];
    std::snprintf(
        line, sizeof line, "%5zu  %-16s %-9s %-9s %-9s %12s %12s", i, l.name.c_str(),
        std::string(placement_name(p)).c_str(),
        std::string(placement_name(placement_for_step(p, stack.max_tokens, plan.phased_cpu_max_tokens))).c_str(),
        std::string(placement_name(placement_for_step(p, 1, plan.phased_cpu_max_tokens))).c_str(),
        format_size(l.weight_bytes).c_str(), format_size(l.kv_cache_bytes).c_str());
    out += line;
    if (step) {
      std::snprintf(line, sizeof line, " %11.6f %10.6f", step->layers[i].compute_s, step->layers[i].copy_s);
      out += line;
    }
    out += "\n";
  }
  out += "\n";
  out += plan.memory.uses_device ? "device memory:\n" + plan.memory.breakdown() : "device memory: none\n";
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += "host memory: " + plan.host.describe() + " (" + format_size(plan.host.total()) + ")\n";
  if (!plan.note.empty()) out += "note: " + plan.note + "\n";
  return out;
}

std::string device_text(const DeviceProfile& device) {
  return "device: " +
         (device.has_gpu ? device.name + ", CUDA context " + format_size(device.context_bytes)
                         : std::string("no GPU: every layer on the CPU")) +
         "\n";
}

constexpr const char* kNoRates =
    "predicted: no measured rates for this device (run `ferry calibrate`, or give a calibrated profile)\n";

std::string plan_text(const std::string& model, const LlamaConfig& config, const LlamaRunnerOptions& options,
                      const DeviceProfile& device, const Plan& plan, const StackProfile& stack) {
  std::string out = "model: " + model + " (" + std::string(llama_arch_name(config.arch)) + ", " +
                    std::to_string(config.n_layer) + " blocks, width " + std::to_string(config.n_embd) + ")\n";
  out += device_text(device);
  out += "plan: " + (options.plan_file ? "from " + options.plan_file->path : std::string(policy_name(plan.policy))) +
         " under --vram " + format_size(options.vram_budget) + ", context " + std::to_string(options.n_ctx) +
         ", steps of up to " + std::to_string(options.max_tokens) + " tokens: " + plan.summary() + "\n";
  if (std::count(plan.placements.begin(), plan.placements.end(), Placement::PHASED) > 0)
    out += "phased layers: on the CPU in steps of up to " + std::to_string(plan.phased_cpu_max_tokens) +
           " tokens, streamed in larger ones\n";
  out += "\n";
  out += layers_and_memory_text(plan, stack, nullptr);
  if (const std::optional<RunPrediction> run = prediction(options, device, plan, stack)) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "predicted (cost model): prompt of %lld tokens %.0f tokens/s, generation %.1f tokens/s, %lld tokens "
                  "in %.2f s\n",
                  static_cast<long long>(options.planned_prompt_tokens), run->prompt_tokens_per_s,
                  run->generate_tokens_per_s, static_cast<long long>(options.planned_generated_tokens), run->total_s);
    out += line;
  } else {
    out += kNoRates;
  }
  return out;
}

// ---- Flux ---------------------------------------------------------------------------------------------------------

struct FluxWorkload {
  ImageSize image;
  int64_t image_tokens = 0, text_tokens = 0;
};

std::optional<StepPrediction> flux_prediction(const FluxRunnerOptions& options, const DeviceProfile& device,
                                              const Plan& plan, const StackProfile& stack) {
  if (!device.has_rates()) return std::nullopt;
  return predict_step(stack, plan.placements, device, options.max_tokens,
                      {options.prefetch_depth, plan.phased_cpu_max_tokens});
}

nlohmann::json flux_plan_json(const PlanFlags& f, const std::string& model, const FluxWorkload& w,
                              const FluxRunnerOptions& options, const DeviceProfile& device, const Plan& plan,
                              const StackProfile& stack) {
  nlohmann::json j = common_plan_json(f, model, "flux", options.vram_budget, options.max_tokens, device, plan, stack);
  j["image"] = {{"width", w.image.width}, {"height", w.image.height}};
  j["image_tokens"] = w.image_tokens;
  j["text_tokens"] = w.text_tokens;
  j["predicted"] = nullptr;
  if (const std::optional<StepPrediction> step = flux_prediction(options, device, plan, stack)) {
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerTime& t : step->layers) layers.push_back({{"compute_s", t.compute_s}, {"copy_s", t.copy_s}});
    j["predicted"] = {{"image_tokens", w.image_tokens},
                      {"text_tokens", w.text_tokens},
                      {"seconds_per_step", step->seconds},
                      {"step_layers", layers}};
  }
  return j;
}

std::string flux_plan_text(const std::string& model, const FluxConfig& config, const FluxWorkload& w,
                           const FluxRunnerOptions& options, const DeviceProfile& device, const Plan& plan,
                           const StackProfile& stack) {
  std::string out = "model: " + model + " (flux, " + std::to_string(config.n_double) + " double + " +
                    std::to_string(config.n_single) + " single blocks, width " + std::to_string(config.hidden) +
                    (config.has_guidance ? ", guidance" : ", no guidance: schnell") + ")\n";
  out += device_text(device);
  out += "plan: " + (options.plan_file ? "from " + options.plan_file->path : std::string(policy_name(plan.policy))) +
         " under --vram " + format_size(options.vram_budget) + ", image " + size_text(w.image.width, w.image.height) +
         ", steps of " + std::to_string(w.image_tokens) + " image + " + std::to_string(w.text_tokens) +
         " text tokens: " + plan.summary() + "\n\n";
  const std::optional<StepPrediction> step = flux_prediction(options, device, plan, stack);
  out += layers_and_memory_text(plan, stack, step ? &*step : nullptr);
  if (step) {
    char line[200];
    std::snprintf(line, sizeof line,
                  "predicted (cost model): %.4f s per step (%lld image + %lld text tokens); GPU busy %.4f s, copies "
                  "%.4f s, CPU %.4f s\n",
                  step->seconds, static_cast<long long>(w.image_tokens), static_cast<long long>(w.text_tokens),
                  step->gpu_busy_s, step->copy_busy_s, step->cpu_busy_s);
    out += line;
  } else {
    out += kNoRates;
  }
  return out;
}

// `ferry plan` of a Flux file: the plan `ferry flux-step --image WxH` with --txt text tokens would run.
int run_flux_plan(const PlanFlags& f, const std::string& path, const GgufFile& file,
                  const std::optional<DeviceProfile>& other_device) {
  FluxWorkload w;
  w.image = image_flag(f.image);
  w.image_tokens = w.image.tokens();
  w.text_tokens = f.text_tokens;
  FluxRunnerOptions options;
  options.vram_budget = vram_flag(f.vram);
  options.policy = policy_flag(f.policy);
  options.prefetch_depth = f.prefetch;
  apply_override_flags(f.overrides, options.overrides, options.plan_file, options.vram_budget);
  options.max_tokens = w.image_tokens + w.text_tokens;
  options.text_tokens = w.text_tokens;
  const FluxConfig config = FluxConfig::from_gguf(file);
  const FluxWeights weights = FluxWeights::from_gguf(file, config);
  const DeviceProfile device = other_device ? *other_device : this_device_profile();
  if (!other_device) note_when_cpu_only(options.policy);
  const Plan plan = plan_flux_run(config, weights, options, device);
  const StackProfile stack = flux_stack_profile(config, weights, options.max_tokens, options.text_tokens);
  write_stdout(f.json ? flux_plan_json(f, path, w, options, device, plan, stack).dump(2) + "\n"
                      : flux_plan_text(path, config, w, options, device, plan, stack));
  return 0;
}

// ---- the command -------------------------------------------------------------------------------------------------

int run_plan(const PlanFlags& f) {
  // Flags first, as every command that takes a model checks them (a typo costs no model load).
  if (f.text_tokens < 1 || f.text_tokens > 4096)
    bad_flag("--txt", std::to_string(f.text_tokens) + " is outside 1..4096");
  if (f.image_given) image_flag(f.image);
  LlamaRunnerOptions options;
  options.vram_budget = vram_flag(f.vram);
  options.policy = policy_flag(f.policy);
  if (f.n_ctx < 0) bad_flag("--ctx", "must not be negative");
  options.prefetch_depth = f.prefetch;
  if (f.prompt_tokens < 1) bad_flag("--prompt", "must be at least 1 token");
  if (f.generated_tokens < 0) bad_flag("--gen", "must not be negative");
  options.planned_prompt_tokens = f.prompt_tokens;
  options.planned_generated_tokens = f.generated_tokens;
  apply_override_flags(f.overrides, options);
  const DefaultModelChoice default_model = f.model.empty() ? default_model_choice() : DefaultModelChoice::SMOLLM2;
  const std::optional<DeviceProfile> other_device =
      f.device_profile.empty() ? std::nullopt : std::optional(read_device_profile(f.device_profile));

  const std::string path = model_path_or_default(f.model, default_model);
  const GgufFile file = GgufFile::open_header(path);  // the header says it all: no weight is read
  const std::optional<std::string> arch =
      file.find("general.architecture") ? std::optional(file.get_string("general.architecture")) : std::nullopt;
  if (arch == "flux") return run_flux_plan(f, path, file, other_device);
  if (f.image_given || f.text_given)
    bad_flag(f.image_given ? "--image" : "--txt", "applies to Flux models; " + quote_name(path) + " is " +
                                                      (arch ? quote_name(*arch) : std::string("not Flux")));
  const LlamaConfig config = LlamaConfig::from_gguf(file);
  const LlamaWeights weights = LlamaWeights::from_gguf(file, config);
  options.n_ctx = choose_context(f.n_ctx, f.force_ctx, config, path, "--ctx");
  options.max_tokens = std::min<int64_t>(512, options.n_ctx);  // as `run` steps
  const DeviceProfile device = other_device ? *other_device : this_device_profile();
  if (!other_device) note_when_cpu_only(options.policy);
  options.max_tokens = llama_step_tokens(config, weights, options, device);  // `auto` may take smaller steps
  const Plan plan = plan_llama_run(config, weights, options, device);
  const StackProfile stack = llama_stack_profile(config, weights, options.n_ctx, options.max_tokens, false);
  write_stdout(f.json ? plan_json(f, path, config, options, device, plan, stack).dump(2) + "\n"
                      : plan_text(path, config, options, device, plan, stack));
  return 0;
}

}  // namespace

Action add_plan_command(CLI::App& app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* sub = app.add_subcommand(
      "plan", "Where `run` would put each layer under a VRAM budget, and the memory it takes (reads only the header)");
  sub->add_option("model", f->model, "GGUF model file (default: the default model of `run`)");
  CLI::Option* vram = sub->add_option("--vram", f->vram, "VRAM budget, e.g. 8GiB, 6.5G")->capture_default_str();
  CLI::Option* policy =
      sub->add_option("--policy", f->policy, "resident-first, resident-stream, stream-all, cpu-all or auto")
          ->capture_default_str();
  add_override_flags(*sub, f->overrides, vram, policy);
  sub->add_option("--ctx", f->n_ctx, "Context length (default: the model's training context, at most 2048)");
  sub->add_flag("--force-ctx", f->force_ctx, "Allow --ctx beyond the model's training context");
  sub->add_option("--prefetch", f->prefetch, "Streamed layers copied ahead of compute (1-4)")
      ->check(CLI::Range(1, 4))
      ->capture_default_str();
  sub->add_option("--device-profile", f->device_profile,
                  "Plan for another machine: a JSON device profile {\"name\", \"has_gpu\", \"context_bytes\"}");
  sub->add_option("--prompt", f->prompt_tokens, "Prompt tokens of the workload predicted (and `auto` plans for)")
      ->capture_default_str();
  sub->add_option("--gen", f->generated_tokens, "Generated tokens of that workload")->capture_default_str();
  CLI::Option* image = sub->add_option("--image", f->image, "Flux models: image size in pixels, WxH, multiples of 16")
                           ->capture_default_str();
  CLI::Option* txt =
      sub->add_option("--txt", f->text_tokens, "Flux models: text tokens of each step")->capture_default_str();
  sub->add_flag("--json", f->json,
                "Print the plan as JSON (layout in the README; --plan reads it back: docs/policies.md)");
  return [f, image, txt] {
    f->image_given = image->count() > 0;
    f->text_given = txt->count() > 0;
    return run_plan(*f);
  };
}

}  // namespace ferry::cli
