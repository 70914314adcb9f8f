// `ferry bench [MODEL] --vram LIST --policy LIST [-p N] [-n N | --image WxH --txt N] [-r REPS] [-o md|json|csv]
// [--out-dir DIR] [--timeline] [--link-gbps RATE] [--resident/--stream/--cpu REGEX | --plan FILE]`: every (budget,
// policy) arm of a model side by side in the manner of llama-bench (bench_runner.hpp): of a llama model the prefill
// and generation rates (pp<N>, tg<N>, tokens per second), of a Flux model (general.architecture = flux) the seconds
// per denoising step (`step`, of an --image WxH with --txt text tokens), with each arm's plan and peak device memory
// against its budget. -p/-n given for a Flux model, or --image/--txt for a llama one, are refused (exit 2) naming the
// flag: they would silently measure something else. Standard output carries the report in the chosen form;
// --out-dir also writes all three forms and the SVG pictures there (bench_output.hpp, bench_charts.hpp). Progress goes
// to standard error. Overrides apply to every arm; with --plan there is one arm per budget (the file's budget without
// --vram), running the file's placements.
//
// Every flag is checked before the model is loaded; the test sizes against the model's context right after.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench_charts.hpp"
#include "bench_output.hpp"
#include "bench_runner.hpp"
#include "commands.hpp"
#include "ferry/atomic_file.hpp"
#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/offload/size_parse.hpp"
#include "image_flag.hpp"
#include "model_command.hpp"
#include "override_flags.hpp"

namespace ferry::cli {
namespace {

struct BenchFlags {
  std::string model;
  std::string vram = "8GiB";
  std::string policy = "resident-first,resident-stream,stream-all,cpu-all";
  int64_t prompt = 512;
  int64_t gen = 128;
  std::string image = "256x256";  // Flux: small enough for the built-in small model on a CPU
  int64_t text_tokens = 64;       // Flux
  bool prompt_given = false, gen_given = false, image_given = false, text_given = false;
  int reps = 5;
  std::string output = "md";
  std::string out_dir;
  bool timeline = false;
  std::string link_gbps;
  int prefetch = 1;
  bool sequential = false;
  OverrideFlags overrides;
};

enum class Format { MD, JSON, CSV };

struct BenchPlan {
  BenchRequest request;
  Format format = Format::MD;
  DefaultModelChoice default_model = DefaultModelChoice::SMOLLM2;
};

// The items of a comma-separated list, spaces around them dropped; bad_flag for an empty item.
std::vector<std::string> list_items(const std::string& flag, const std::string& text, const char* example) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty())
      bad_flag(flag, quote_name(text) + " has an empty item (a comma-separated list, e.g. " + example + ")");
    items.push_back(std::move(item));
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

void check_out_dir(const std::string& dir) {
  if (dir.empty()) return;
  const std::filesystem::path p(dir);
  std::error_code ec;
  if (std::filesystem::exists(p, ec) && !std::filesystem::is_directory(p, ec))
    bad_flag("--out-dir", quote_name(dir) + " exists and is not a folder");
  if (!std::filesystem::create_directories(p, ec) && ec)
    fail(ErrorCategory::IO, dir + ": cannot create the folder (--out-dir): " + ec.message());
  if (::access(p.c_str(), W_OK | X_OK) != 0)
    fail(ErrorCategory::IO, dir + ": cannot write into the folder (--out-dir): " + std::strerror(errno));
}

// The policy column of a plan file's arms: cpu-all when every layer is on the CPU (so it runs without a GPU, and is
// skipped like the other GPU arms otherwise); the plan column says where the placements came from.
std::string plan_file_policy(const PlanFile& file) {
  const bool all_cpu =
      std::all_of(file.placements.begin(), file.placements.end(), [](Placement p) { return p == Placement::CPU; });
  return all_cpu ? "cpu-all" : "resident-stream";
}

BenchPlan validate(const BenchFlags& f) {
  BenchPlan plan;
  BenchRequest& r = plan.request;
  std::vector<std::pair<std::string, uint64_t>> budgets;
  for (const std::string& item : list_items("--vram", f.vram, "8GiB,4GiB,2GiB")) {
    const uint64_t bytes = vram_flag(item);
    for (const auto& [text, b] : budgets)
      if (b == bytes) bad_flag("--vram", quote_name(item) + " is the same budget as " + quote_name(text));
    budgets.emplace_back(item, bytes);
  }
  // The overrides and the plan file: every arm runs with them. A plan file decides every placement, so one arm per
  // budget, at its own budget when no --vram is given.
  LlamaRunnerOptions placement;
  apply_override_flags(f.overrides, placement);
  r.overrides = placement.overrides;
  r.plan_file = placement.plan_file;
  if (r.plan_file && r.plan_file->budget_bytes && f.overrides.vram->count() == 0)
    budgets = {{format_size(*r.plan_file->budget_bytes), *r.plan_file->budget_bytes}};
  std::vector<Policy> policies;
  for (const std::string& item :
       list_items("--policy", r.plan_file ? plan_file_policy(*r.plan_file) : f.policy, "resident-stream,cpu-all")) {
    const Policy p = policy_flag(item);
    if (std::find(policies.begin(), policies.end(), p) != policies.end())
      bad_flag("--policy", quote_name(item) + " is listed twice");
    policies.push_back(p);
  }
  for (const auto& [text, bytes] : budgets)
    for (const Policy p : policies) r.arms.push_back({text, bytes, p});
  if (f.prompt == 0 && f.gen == 0) bad_flag("--prompt", "and --gen are both 0: there is nothing to measure");
  const ImageSize image = image_flag(f.image);
  r.image_width = image.width;
  r.image_height = image.height;
  r.text_tokens = f.text_tokens;
  r.prompt = f.prompt;
  r.gen = f.gen;
  r.reps = f.reps;
  r.prefetch = f.prefetch;
  r.sequential = f.sequential;
  r.link_gbps = link_flag(f.link_gbps);
  if (f.output == "md")
    plan.format = Format::MD;
  else if (f.output == "json")
    plan.format = Format::JSON;
  else if (f.output == "csv")
    plan.format = Format::CSV;
  else
    bad_flag("--output", quote_name(f.output) + " is not a format (md, json or csv)");
  if (f.timeline && f.out_dir.empty())
    bad_flag("--timeline", "needs --out-dir: the timeline's SVG and trace are written there");
  check_out_dir(f.out_dir);
  r.timeline = f.timeline;
  if (f.timeline) r.trace_path = (std::filesystem::path(f.out_dir) / "bench-trace.json").string();
  if (f.model.empty()) plan.default_model = default_model_choice();
  return plan;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

void log_line(const std::string& line) {
  std::fprintf(stderr, "ferry: bench: %s\n", line.c_str());
  std::fflush(stderr);
}

BenchReport run_llama_bench(const std::string& path, const BenchRequest& request, BenchEnvironment env) {
  const LoadedModel model(path);
  const int64_t need = std::max(request.prompt, request.gen);
  if (need > model.config.n_ctx_train)
    bad_flag(request.prompt >= request.gen ? "--prompt" : "--gen",
             std::to_string(need) + " tokens exceed the training context of " + model.path + " (" +
                 std::to_string(model.config.n_ctx_train) + " tokens)");
  log_line(model.path + " on " + (env.gpu ? env.device : "the CPU (no GPU: " + env.no_gpu_reason + ")") + ", " +
           std::to_string(request.arms.size()) + " arms");
  return run_bench(model, request, std::move(env), log_line);
}

int write_report(const BenchFlags& f, const BenchPlan& plan, const BenchReport& report) {
  const std::string md = bench_markdown(report);
  const std::string json = dump_json(bench_json(report)) + "\n";
  const std::string csv = bench_csv(report);
  if (!f.out_dir.empty()) {
    const std::filesystem::path dir(f.out_dir);
    write_text(dir / "bench.md", md);
    write_text(dir / "bench.json", json);
    write_text(dir / "bench.csv", csv);
    write_text(dir / "bench-phases.svg", phase_chart_svg(report));  // every test has its panel, Flux's step too
    if (report.timeline) write_text(dir / "bench-timeline.svg", timeline_svg(report));
    log_line("wrote bench.md, bench.json, bench.csv, bench-phases.svg" +
             std::string(report.timeline ? ", bench-timeline.svg, bench-trace.json" : "") + " to " + f.out_dir);
  }
  write_stdout(plan.format == Format::JSON ? json : plan.format == Format::CSV ? csv : md);
  return 0;
}

// The file's family from its header (no weight read), and the flags of the other family refused by name.
BenchArch model_arch(const BenchFlags& f, const std::string& path) {
  const GgufFile header = GgufFile::open_header(path);
  const bool flux = header.find("general.architecture") && header.get_string("general.architecture") == "flux";
  if (flux && (f.prompt_given || f.gen_given))
    bad_flag(f.prompt_given ? "--prompt" : "--gen",
             "applies to llama models; " + quote_name(path) +
                 " is a Flux model, whose test is `step` (one denoising step): set its workload with --image WxH and "
                 "--txt N");
  if (!flux && (f.image_given || f.text_given))
    bad_flag(f.image_given ? "--image" : "--txt", "applies to Flux models; " + quote_name(path) + " is not Flux");
  return flux ? BenchArch::FLUX : BenchArch::LLAMA;
}

int bench_command(const BenchFlags& f) {
  BenchPlan plan = validate(f);
  // Before the model is loaded or anything else touches the GPU: the context's overhead is measured first.
  BenchEnvironment env = bench_environment();
  const std::string path = model_path_or_default(f.model, plan.default_model);
  plan.request.arch = model_arch(f, path);
  BenchReport report;
  if (plan.request.arch == BenchArch::FLUX) {
    log_line(path + " (flux) on " + (env.gpu ? env.device : "the CPU (no GPU: " + env.no_gpu_reason + ")") + ", " +
             std::to_string(plan.request.arms.size()) + " arms");
    report = run_flux_bench(path, plan.request, std::move(env), log_line);
  } else {
    report = run_llama_bench(path, plan.request, std::move(env));
  }
  return write_report(f, plan, report);
}

}  // namespace

Action add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Prefill and generation rates (Flux: seconds per step) of every budget and policy side by side (default model as "
      "`run`)");
  cmd->add_option("model", o->model, "GGUF model file (omit for the built-in default model; see FERRY_DEFAULT_MODEL)");
  CLI::Option* vram =
      cmd->add_option("--vram", o->vram, "VRAM budgets, comma-separated (default 8GiB; e.g. 8GiB,4GiB,2GiB)");
  CLI::Option* policy = cmd->add_option(
      "--policy", o->policy,
      "Policies, comma-separated (default: all of resident-first, resident-stream, stream-all, cpu-all)");
  add_override_flags(*cmd, o->overrides, vram, policy);
  CLI::Option* prompt = cmd->add_option("-p,--prompt", o->prompt,
                                        "Llama models: prompt tokens of the prefill test pp<N> (default 512; 0: none)")
                            ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  CLI::Option* gen =
      cmd->add_option("-n,--gen", o->gen, "Llama models: tokens of the generation test tg<N> (default 128; 0: none)")
          ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  CLI::Option* image =
      cmd->add_option("--image", o->image,
                      "Flux models: image size of the step test in pixels, WxH, multiples of 16 (default 256x256)");
  CLI::Option* txt = cmd->add_option("--txt", o->text_tokens, "Flux models: text tokens of each step (default 64)")
                         ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  cmd->add_option("-r,--reps", o->reps, "Repetitions of each test (default 5)")->check(CLI::Range(1, 1000));
  cmd->add_option("-o,--output", o->output, "Standard output's form: md (default), json or csv");
  cmd->add_option("--out-dir", o->out_dir,
                  "Also write bench.md, bench.json, bench.csv and bench-phases.svg into this folder (made if missing)");
  cmd->add_flag("--timeline", o->timeline,
                "Trace one prefill and one decode step (Flux: one step) of the first arm: bench-timeline.svg and "
                "bench-trace.json "
                "(needs --out-dir)");
  cmd->add_option("--link-gbps", o->link_gbps,
                  "Simulate a slower host link: pace streamed layers' host-to-device copies to this many GB/s "
                  "(e.g. 25 or 12, as PCIe 4.0 x16 or x8); marked as simulated in every output");
  cmd->add_option("--prefetch", o->prefetch, "Streamed layers copied ahead of compute (1-4)")->check(CLI::Range(1, 4));
  cmd->add_flag("--sequential", o->sequential,
                "Hold one arm at a time and run its repetitions in a row (default: hold every arm and alternate "
                "them, when their budgets fit the device together)");
  return [o, prompt, gen, image, txt] {
    o->prompt_given = prompt->count() > 0;
    o->gen_given = gen->count() > 0;
    o->image_given = image->count() > 0;
    o->text_given = txt->count() > 0;
    return bench_command(*o);
  };
}

}  // namespace ferry::cli
