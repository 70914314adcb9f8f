#include "bench_output.hpp"

#include <algorithm>
#include <cstdio>

#include "ferry/offload/size_parse.hpp"

namespace ferry::cli {
namespace {

constexpr int kFormatVersion = 1;

std::string fixed(double v, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

// A markdown cell: pipes escaped, line breaks flattened.
std::string cell(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string device_text(const BenchEnvironment& env) {
  if (!env.gpu) return "cpu (no GPU: " + env.no_gpu_reason + ")";
  return env.device + (env.driver.empty() ? "" : " (driver " + env.driver + ")");
}

std::string memory_text(const BenchArm& arm) {
  if (!arm.uses_device) return "none (CPU)";
  const double share = 100.0 * static_cast<double>(arm.device_peak_bytes) / static_cast<double>(arm.spec.vram);
  std::string text =
      format_size(arm.device_peak_bytes) + " / " + format_size(arm.spec.vram) + " (" + fixed(share, 0) + "%)";
  if (arm.process_device_bytes) text += "; process " + format_size(*arm.process_device_bytes);
  return text;
}

// "12 GB/s (simulated)" where the arm's copies were paced, else why the link did not matter.
std::string link_cell(const BenchReport& r, const BenchArm& arm) {
  if (arm.link_paced) return link_rate_text(r.request.link_gbps) + " GB/s (simulated)";
  return r.env.gpu ? "no effect (nothing streamed)" : "no effect (no GPU)";
}

// A row's note for an arm that did not run. A missing GPU is said once, in the device line above the table.
std::string not_run_text(const BenchArm& arm) {
  if (arm.status == ArmStatus::SKIPPED) return "skipped: needs a GPU";
  return std::string(arm_status_name(arm.status)) + ": " + arm.reason;
}

// How the figures were taken, for the markdown's header.
std::string method_text(const BenchReport& r) {
  return std::to_string(kBenchWarmups) + " warm-up, " + std::to_string(r.request.reps) + " repetitions, arms " +
         (r.interleaved ? "interleaved" : "one after another (" + r.order_note + ")") + "; " +
         std::string(r.request.arch == BenchArch::FLUX ? "s/step" : "t/s") +
         ": mean ± sample standard deviation over the repetitions; clock: " + std::string(kBenchClock);
}

Json optional_bytes(const std::optional<uint64_t>& v) { return v ? Json(*v) : Json(nullptr); }
Json text_or_null(const std::string& v) { return v.empty() ? Json(nullptr) : Json(v); }

Json test_json(const BenchTest& t) {
  const SampleStats tps = t.tps(), time = t.time();
  Json out = Json::object();
  out["name"] = t.name;
  out["kind"] = std::string(test_kind_name(t.kind));
  out["unit"] = std::string(test_unit(t.kind));
  out["tokens"] = t.tokens;
  if (t.kind == TestKind::STEP) {  // seconds per step: the figure is the time, not a rate
    out["mean_s"] = time.mean;
    out["stddev_s"] = time.stddev;
    out["median_s"] = time.median;
    out["samples_s"] = t.seconds;
    out["samples_sequence"] = t.sequence;
    return out;
  }
  out["mean_tps"] = tps.mean;
  out["stddev_tps"] = tps.stddev;
  out["median_tps"] = tps.median;
  out["mean_s"] = time.mean;
  out["stddev_s"] = time.stddev;
  out["samples_s"] = t.seconds;
  out["samples_tps"] = t.tokens_per_second();
  out["samples_sequence"] = t.sequence;
  return out;
}

Json arm_json(const BenchArm& a, const Json& link) {
  Json tests = Json::array();
  for (const BenchTest& t : a.tests) tests.push_back(test_json(t));
  return Json{{"vram", a.spec.vram_text},
              {"vram_bytes", a.spec.vram},
              {"policy", std::string(policy_name(a.spec.policy))},
              {"status", std::string(arm_status_name(a.status))},
              {"reason", text_or_null(a.reason)},
              {"plan",
               {{"summary", text_or_null(a.plan)},
                {"resident", a.resident},
                {"streamed", a.streamed},
                {"cpu", a.cpu},
                {"phased", a.phased},
                {"step_tokens", a.step_tokens > 0 ? nlohmann::json(a.step_tokens) : nlohmann::json()}}},
              {"memory",
               {{"uses_device", a.uses_device},
                {"budget_bytes", a.spec.vram},
                {"context_bytes", a.context_bytes},
                {"arena_bytes", a.arena_bytes},
                {"arena_high_water_bytes", a.arena_high_water},
                {"device_peak_bytes", a.device_peak_bytes},
                {"process_device_bytes", optional_bytes(a.process_device_bytes)},
                {"host_bytes", a.host_bytes}}},
              {"simulated_link_gbps", a.link_paced ? link : Json(nullptr)},
              {"link", text_or_null(a.link)},
              {"tests", std::move(tests)}};
}

Json model_json(const BenchModel& m) {
  Json out = {
      {"path", m.path}, {"name", m.name}, {"n_layer", m.n_layer}, {"n_embd", m.n_embd}, {"file_bytes", m.file_bytes}};
  if (m.arch == BenchArch::FLUX) {
    out["n_double"] = m.n_double;
    out["n_single"] = m.n_single;
  } else {
    out["n_vocab"] = m.n_vocab;
    out["n_ctx_train"] = m.n_ctx_train;
  }
  return out;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n\r") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string tps_text(const SampleStats& tps) { return fixed(tps.mean, 2) + " ± " + fixed(tps.stddev, 2); }

std::string_view test_unit(TestKind kind) noexcept { return kind == TestKind::STEP ? "s/step" : "t/s"; }

std::string test_value_text(const BenchTest& t) {
  if (t.kind != TestKind::STEP) return tps_text(t.tps());
  const SampleStats time = t.time();
  return fixed(time.mean, 4) + " ± " + fixed(time.stddev, 4);
}

std::string bench_markdown(const BenchReport& r) {
  const bool link = r.request.link_gbps > 0;
  const bool flux = r.request.arch == BenchArch::FLUX;
  const std::string unit(test_unit(flux ? TestKind::STEP : TestKind::PREFILL));
  std::string out = "## ferry bench: " + r.model.name + "\n\n";
  if (flux)
    out += "- model: " + r.model.path + " (flux, " + std::to_string(r.model.n_double) + " double + " +
           std::to_string(r.model.n_single) + " single blocks, width " + std::to_string(r.model.n_embd) + ", " +
           format_size(r.model.file_bytes) + ")\n";
  else
    out += "- model: " + r.model.path + " (" + std::to_string(r.model.n_layer) + " blocks, width " +
           std::to_string(r.model.n_embd) + ", vocabulary " + std::to_string(r.model.n_vocab) + ", " +
           format_size(r.model.file_bytes) + ")\n";
  if (flux)
    out += "- workload: one denoising step of a " + std::to_string(r.request.image_width) + "x" +
           std::to_string(r.request.image_height) + " image: " + std::to_string(r.request.image_tokens()) +
           " image + " + std::to_string(r.request.text_tokens) + " text tokens, inputs N(0, 1) from seed " +
           std::to_string(kBenchTokenSeed) + "\n";
  out += "- device: " + device_text(r.env) + "; host: " + r.env.cpu_model + ", " +
         std::to_string(r.env.hardware_threads) + " threads\n";
  out += "- build: ferry " + r.env.version + ", git " + r.env.git_sha + (r.env.git_dirty ? " (dirty)" : "") +
         "; started " + r.env.started_at + "\n";
  out += "- method: " + method_text(r) + "\n";
  if (r.env.gpu)
    out += std::string("- engine: decode steps ") +
           (r.env.decode_graphs ? "replayed as CUDA graphs" : "kernel by kernel (FERRY_DECODE_GRAPHS=off)") +
           ", activations up " +
           (r.env.activations_by_kernel ? "by kernel (FERRY_ACTIVATION_UPLOAD=kernel)" : "by the copy engine") +
           ", fused ops " + (r.env.fused_ops ? "on" : "off (FERRY_FUSED_OPS=off)") + ", attention " +
           (r.env.flash_attention ? "flash where the GPU allows" : "chunked (FERRY_ATTENTION_PATH=chunked)") + "\n";
  if (link)
    out += "- **simulated link**: host-to-device copies of streamed weights paced to " +
           link_rate_text(r.request.link_gbps) +
           " GB/s; rows whose copies were paced say so in the link column, their figures are simulated\n";
  out += "\n| budget | policy | plan | device peak / budget |" + std::string(link ? " link |" : "") + " test | " +
         unit + " |\n";
  out += "| ---: | --- | --- | ---: |" + std::string(link ? " --- |" : "") + " ---: | ---: |\n";
  for (const BenchArm& a : r.arms) {
    const std::string lead = "| " + cell(a.spec.vram_text) + " | " + std::string(policy_name(a.spec.policy)) + " | ";
    if (a.status != ArmStatus::OK) {
      out += lead + cell(not_run_text(a)) + " | |" + (link ? " |" : "") + " | |\n";
      continue;
    }
    const std::string link_column = link ? " " + cell(link_cell(r, a)) + " |" : std::string();
    for (const BenchTest& t : a.tests)
      out += lead + cell(a.plan) + " | " + cell(memory_text(a)) + " |" + link_column + " " + t.name + " | " +
             test_value_text(t) + " |\n";
  }
  return out;
}

Json bench_json(const BenchReport& r) {
  const BenchRequest& q = r.request;
  Json vram = Json::array(), vram_bytes = Json::array(), policies = Json::array();
  for (const BenchArmSpec& s : q.arms) {
    if (std::find(vram.begin(), vram.end(), Json(s.vram_text)) == vram.end()) {
      vram.push_back(s.vram_text);
      vram_bytes.push_back(s.vram);
    }
    const std::string p(policy_name(s.policy));
    if (std::find(policies.begin(), policies.end(), Json(p)) == policies.end()) policies.push_back(p);
  }
  const Json link = q.link_gbps > 0 ? Json(q.link_gbps) : Json(nullptr);
  Json arms = Json::array();
  for (const BenchArm& a : r.arms) arms.push_back(arm_json(a, link));
  Json out = {{"format", "ferry-bench"},
              {"format_version", kFormatVersion},
              {"started_at", r.env.started_at},
              {"simulated_link_gbps", link},
              {"device",
               {{"name", r.env.gpu ? r.env.device : "cpu"},
                {"gpu", r.env.gpu},
                {"driver", text_or_null(r.env.driver)},
                {"cuda_backend", r.env.cuda_backend},
                {"no_gpu_reason", text_or_null(r.env.no_gpu_reason)}}},
              {"host", {{"cpu_model", r.env.cpu_model}, {"hardware_threads", r.env.hardware_threads}}},
              {"build", {{"ferry_version", r.env.version}, {"git_sha", r.env.git_sha}, {"dirty", r.env.git_dirty}}},
              {"architecture", std::string(bench_arch_name(r.request.arch))},
              {"model", model_json(r.model)},
              {"clock", std::string(kBenchClock)},
              {"engine",
               {{"decode_graphs", r.env.decode_graphs},
                {"activation_upload", r.env.activations_by_kernel ? "kernel" : "copy"},
                {"fused_ops", r.env.fused_ops},
                {"attention_path", r.env.flash_attention ? "flash" : "chunked"}}},
              {"parameters",
               {{"vram", std::move(vram)},
                {"vram_bytes", std::move(vram_bytes)},
                {"policies", std::move(policies)},
                {"reps", q.reps},
                {"warmups", kBenchWarmups},
                {"prefetch", q.prefetch},
                {"token_seed", kBenchTokenSeed},
                {"simulated_link_gbps", link},
                {"order", r.interleaved ? "interleaved" : "sequential"},
                {"order_note", text_or_null(r.order_note)}}},
              {"arms", std::move(arms)}};
  Json& p = out["parameters"];
  if (q.arch == BenchArch::FLUX) {
    p["image"] = {{"width", q.image_width}, {"height", q.image_height}};
    p["image_tokens"] = q.image_tokens();
    p["text_tokens"] = q.text_tokens;
    p["guidance"] = kBenchFluxGuidance;
  } else {
    p["prompt"] = q.prompt;
    p["gen"] = q.gen;
    p["n_ctx"] = std::max<int64_t>({q.prompt, q.gen, 1});
    p["max_step_tokens"] = kBenchMaxStepTokens;
  }
  return out;
}

std::string bench_csv(const BenchReport& r) {
  std::string out =
      "model,device,vram,vram_bytes,policy,status,test,tokens,reps,mean_tps,stddev_tps,mean_s,stddev_s,"
      "device_peak_bytes,budget_bytes,resident,streamed,cpu,phased,simulated_link_gbps,plan,reason,unit\n";
  const std::string device = r.env.gpu ? r.env.device : "cpu";
  const std::string link = r.request.link_gbps > 0 ? link_rate_text(r.request.link_gbps) : "";
  const std::vector<BenchTest> not_run = bench_tests(r.request);
  for (const BenchArm& a : r.arms) {
    // Every (arm, test) has a row; an arm that did not run has its tests' rows with the statistics left empty.
    const std::vector<BenchTest>& tests = a.status == ArmStatus::OK ? a.tests : not_run;
    for (const BenchTest& t : tests) {
      const bool ran = a.status == ArmStatus::OK;
      const bool rate = ran && t.kind != TestKind::STEP;  // a step's figure is its time: no tokens per second
      const SampleStats tps = t.tps(), time = t.time();
      out += csv_field(r.model.name) + "," + csv_field(device) + "," + csv_field(a.spec.vram_text) + "," +
             std::to_string(a.spec.vram) + "," + std::string(policy_name(a.spec.policy)) + "," +
             std::string(arm_status_name(a.status)) + "," + t.name + "," + (ran ? std::to_string(t.tokens) : "") + "," +
             (ran ? std::to_string(t.seconds.size()) : "") + "," + (rate ? fixed(tps.mean, 4) : "") + "," +
             (rate ? fixed(tps.stddev, 4) : "") + "," + (ran ? fixed(time.mean, 6) : "") + "," +
             (ran ? fixed(time.stddev, 6) : "") + "," + (ran ? std::to_string(a.device_peak_bytes) : "") + "," +
             std::to_string(a.spec.vram) + "," + (ran ? std::to_string(a.resident) : "") + "," +
             (ran ? std::to_string(a.streamed) : "") + "," + (ran ? std::to_string(a.cpu) : "") + "," +
             (ran ? std::to_string(a.phased) : "") + "," + (a.link_paced ? link : "") + "," + csv_field(a.plan) + "," +
             csv_field(a.reason) + "," + std::string(test_unit(t.kind)) + "\n";
    }
  }
  return out;
}

}  // namespace ferry::cli
