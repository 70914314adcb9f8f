// `ferry bench` (and `run --link-gbps`) as a user runs them: the built-in default model without a GPU, one run's three
// forms (markdown, JSON, CSV) read back and compared with each other and with the samples (mean and sample standard
// deviation recomputed here), the simulated link marked in every form, and every refusal: flags checked before the
// model is loaded (exit 2, naming the flag), test sizes beyond the model's context. The JSON schema and the SVG
// pictures are checked by tests/bench/check_bench.py (CTest: bench_outputs).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;
using nlohmann::json;

namespace {

// The synthetic default model in a private cache: offline and fast.
Environment default_model_env(const fs::path& dir) {
  return {{"FERRY_CACHE_DIR", (dir / "cache").string()}, {"FERRY_DEFAULT_MODEL", "synthetic"}};
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(' ');
  if (a == std::string::npos) return {};
  return s.substr(a, s.find_last_not_of(' ') - a + 1);
}

// The cells of a markdown table row "| a | b |".
std::vector<std::string> md_cells(const std::string& line) {
  std::vector<std::string> cells;
  size_t start = 1;
  for (size_t bar = line.find('|', start); bar != std::string::npos; bar = line.find('|', start)) {
    cells.push_back(trim(line.substr(start, bar - start)));
    start = bar + 1;
  }
  return cells;
}

// The table's rows (header and separator excluded), each as its cells.
std::vector<std::vector<std::string>> md_rows(const std::string& md, std::vector<std::string>& header) {
  std::vector<std::vector<std::string>> rows;
  size_t start = 0;
  bool after_separator = false;
  while (start < md.size()) {
    const size_t end = md.find('\n', start);
    const std::string line = md.substr(start, end == std::string::npos ? std::string::npos : end - start);
    start = end == std::string::npos ? md.size() : end + 1;
    if (!line.starts_with("|")) continue;
    if (header.empty()) {
      header = md_cells(line);
    } else if (!after_separator) {
      after_separator = true;
    } else {
      rows.push_back(md_cells(line));
    }
  }
  return rows;
}

// RFC 4180 records: fields separated by commas, quoted fields may hold commas, quotes ("") and line breaks.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> records(1, std::vector<std::string>(1));
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        records.back().back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        records.back().back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      records.back().emplace_back();
    } else if (c == '\n') {
      records.emplace_back(1);
    } else {
      records.back().back() += c;
    }
  }
  REQUIRE_FALSE(quoted);
  if (records.back().size() == 1 && records.back()[0].empty()) records.pop_back();
  return records;
}

struct Stats {
  double mean, stddev;
};

Stats stats_of(const std::vector<double>& v) {
  double mean = 0, squares = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  for (double x : v) squares += (x - mean) * (x - mean);
  return {mean, v.size() > 1 ? std::sqrt(squares / static_cast<double>(v.size() - 1)) : 0.0};
}

using ArmKey = std::tuple<std::string, std::string, std::string>;  // vram, policy, test

}  // namespace

TEST_CASE("ferry bench on the built-in default model works without a GPU; its markdown, JSON and CSV agree") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const std::vector<std::string> args = {"bench",
                                         "-p",
                                         "24",
                                         "-n",
                                         "6",
                                         "-r",
                                         "2",
                                         "--vram",
                                         "1GiB,2GiB",
                                         "--policy",
                                         "cpu-all,resident-stream",
                                         "--out-dir",
                                         out.string(),
                                         "-o",
                                         "json"};
  const Result r = run_ferry(args, dir.path(), false, default_model_env(dir.path()));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const json report = json::parse(r.out);
  CHECK(json::parse(read_text(out / "bench.json")) == report);  // stdout and the folder carry the same run
  const bool gpu = report["device"]["gpu"].get<bool>();
  if (!gpu) CHECK(report["device"]["name"] == "cpu");
  CHECK(report["parameters"]["reps"] == 2);
  CHECK(report["build"]["git_sha"].get<std::string>().size() >= 7);
  REQUIRE(report["arms"].size() == 4);  // budgets outer, policies inner, in the order given

  // JSON: the statistics are those of the samples; arms that need a GPU are skipped without one.
  std::map<ArmKey, Stats> from_json;
  std::vector<std::string> expected_order;
  for (const json& arm : report["arms"]) {
    const std::string vram = arm["vram"], policy = arm["policy"];
    expected_order.push_back(vram + " " + policy);
    CAPTURE(vram);
    CAPTURE(policy);
    if (policy == "cpu-all" || gpu) {
      REQUIRE(arm["status"] == "ok");
      REQUIRE(arm["tests"].size() == 2);
      CHECK(arm["tests"][0]["name"] == "pp24");
      CHECK(arm["tests"][1]["name"] == "tg6");
      for (const json& t : arm["tests"]) {
        const auto samples = t["samples_s"].get<std::vector<double>>();
        const auto tps = t["samples_tps"].get<std::vector<double>>();
        REQUIRE(samples.size() == 2);
        REQUIRE(tps.size() == 2);
        for (size_t i = 0; i < 2; ++i) CHECK(tps[i] == doctest::Approx(t["tokens"].get<double>() / samples[i]));
        const Stats s = stats_of(tps);
        CHECK(t["mean_tps"].get<double>() == doctest::Approx(s.mean).epsilon(1e-12));
        CHECK(t["stddev_tps"].get<double>() == doctest::Approx(s.stddev).epsilon(1e-9));
        CHECK(t["median_tps"].get<double>() == doctest::Approx(s.mean).epsilon(1e-12));  // of two samples
        CHECK(t["mean_s"].get<double>() == doctest::Approx(stats_of(samples).mean).epsilon(1e-12));
        from_json[{vram, policy, t["name"]}] = {t["mean_tps"], t["stddev_tps"]};
      }
      CHECK_FALSE(arm["plan"]["summary"].get<std::string>().empty());
      CHECK(arm["plan"]["resident"].get<int>() + arm["plan"]["streamed"].get<int>() + arm["plan"]["cpu"].get<int>() +
                arm["plan"]["phased"].get<int>() ==
            report["model"]["n_layer"].get<int>() + 1);
      // The step it ran with: the request's, within the context (no `auto` here to choose a smaller one).
      CHECK(arm["plan"]["step_tokens"].get<int64_t>() ==
            std::min(report["parameters"]["max_step_tokens"].get<int64_t>(),
                     report["parameters"]["n_ctx"].get<int64_t>()));
      if (policy == "cpu-all") CHECK(arm["memory"]["uses_device"] == false);
    } else {
      CHECK(arm["status"] == "skipped");
      CHECK(contains(arm["reason"].get<std::string>(), "no GPU"));
      CHECK(arm["tests"].empty());
    }
  }

  // Markdown: one row per (arm, test) that ran, one per arm that did not; the same means and deviations.
  std::vector<std::string> header;
  const auto rows = md_rows(read_text(out / "bench.md"), header);
  REQUIRE(header == std::vector<std::string>{"budget", "policy", "plan", "device peak / budget", "test", "t/s"});
  std::map<ArmKey, Stats> from_md;
  std::vector<std::string> md_order;
  for (const auto& row : rows) {
    REQUIRE(row.size() == header.size());
    const std::string arm = row[0] + " " + row[1];
    if (md_order.empty() || md_order.back() != arm) md_order.push_back(arm);
    if (row[2].starts_with("skipped")) {
      CHECK(row[5].empty());
      continue;
    }
    const size_t pm = row[5].find(" ± ");
    REQUIRE(pm != std::string::npos);
    from_md[{row[0], row[1], row[4]}] = {std::stod(row[5].substr(0, pm)), std::stod(row[5].substr(pm + 4))};
  }
  CHECK(md_order == expected_order);
  REQUIRE(from_md.size() == from_json.size());
  for (const auto& [key, s] : from_json) {
    CAPTURE(std::get<0>(key) + " " + std::get<1>(key) + " " + std::get<2>(key));
    REQUIRE(from_md.count(key) == 1);
    CHECK(std::abs(from_md[key].mean - s.mean) <= 0.005 + 1e-9);  // printed with two decimals
    CHECK(std::abs(from_md[key].stddev - s.stddev) <= 0.005 + 1e-9);
  }
  CHECK(read_text(out / "bench.md").find("pp24") != std::string::npos);

  // CSV: one record per (arm, test), every one with the header's fields; the ran ones with the JSON's statistics.
  const auto records = parse_csv(read_text(out / "bench.csv"));
  REQUIRE(records.size() == 1 + 4 * 2);
  const std::vector<std::string>& columns = records[0];
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < columns.size(); ++i) at[columns[i]] = i;
  for (const char* needed : {"vram", "policy", "status", "test", "mean_tps", "stddev_tps", "device_peak_bytes",
                             "budget_bytes", "simulated_link_gbps", "plan"})
    REQUIRE_MESSAGE(at.count(needed) == 1, needed);
  size_t ran = 0;
  for (size_t i = 1; i < records.size(); ++i) {
    const auto& rec = records[i];
    REQUIRE(rec.size() == columns.size());
    CHECK((rec[at["test"]] == "pp24" || rec[at["test"]] == "tg6"));
    const ArmKey key{rec[at["vram"]], rec[at["policy"]], rec[at["test"]]};
    if (rec[at["status"]] != "ok") {
      CHECK(rec[at["mean_tps"]].empty());
      continue;
    }
    ++ran;
    REQUIRE(from_json.count(key) == 1);
    CHECK(std::stod(rec[at["mean_tps"]]) == doctest::Approx(from_json[key].mean).epsilon(1e-5));
    CHECK(std::stod(rec[at["stddev_tps"]]) == doctest::Approx(from_json[key].stddev).epsilon(1e-4));
    CHECK(rec[at["simulated_link_gbps"]].empty());
  }
  CHECK(ran == from_json.size());

  // The arms alternate: every sample of repetition r comes before every sample of repetition r + 1; each sample has
  // its own place in the sequence.
  std::vector<std::vector<int64_t>> by_rep(2);
  for (const json& arm : report["arms"])
    for (const json& t : arm["tests"]) {
      const auto seq = t["samples_sequence"].get<std::vector<int64_t>>();
      REQUIRE(seq.size() == 2);
      for (size_t rep = 0; rep < 2; ++rep) by_rep[rep].push_back(seq[rep]);
    }
  REQUIRE(report["parameters"]["order"] == "interleaved");
  CHECK(*std::max_element(by_rep[0].begin(), by_rep[0].end()) < *std::min_element(by_rep[1].begin(), by_rep[1].end()));
  std::vector<int64_t> all = by_rep[0];
  all.insert(all.end(), by_rep[1].begin(), by_rep[1].end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) CHECK(all[i] == static_cast<int64_t>(i));
  CHECK(fs::exists(out / "bench-phases.svg"));
  CHECK_FALSE(fs::exists(out / "bench-timeline.svg"));  // only with --timeline
}

TEST_CASE("ferry bench --sequential: each arm runs its repetitions in a row, and the report says so") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const Result r = run_ferry({"bench", "-p", "8", "-n", "2", "-r", "3", "--vram", "1GiB,2GiB", "--policy", "cpu-all",
                              "--sequential", "-o", "json"},
                             dir.path(), false, default_model_env(dir.path()));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const json report = json::parse(r.out);
  CHECK(report["parameters"]["order"] == "sequential");
  CHECK(contains(report["parameters"]["order_note"].get<std::string>(), "--sequential"));
  REQUIRE(report["arms"].size() == 2);
  const auto first = report["arms"][0]["tests"][1]["samples_sequence"].get<std::vector<int64_t>>();
  const auto second = report["arms"][1]["tests"][0]["samples_sequence"].get<std::vector<int64_t>>();
  CHECK(first == std::vector<int64_t>{1, 3, 5});  // pp, tg, pp, tg, pp, tg of the first arm
  CHECK(second == std::vector<int64_t>{6, 8, 10});
  for (const json& arm : report["arms"])
    for (const json& t : arm["tests"]) {  // three samples: the median is the middle one
      auto tps = t["samples_tps"].get<std::vector<double>>();
      std::sort(tps.begin(), tps.end());
      CHECK(t["median_tps"].get<double>() == tps[1]);
    }
}

TEST_CASE("ferry bench reports the engine settings it ran with, and refuses a bad one before running") {
  // FERRY_DECODE_GRAPHS, FERRY_ACTIVATION_UPLOAD, FERRY_FUSED_OPS and FERRY_ATTENTION_PATH change the GPU figures: a
  // report carries them (JSON `engine`; the markdown says them when a GPU ran), so runs with different settings are not
  // compared unawares.
  TempDir dir;
  struct Case {
    const char* graphs;  // FERRY_DECODE_GRAPHS, empty: unset
    const char* upload;
    const char* fused;
    const char* attention;
    bool expect_graphs;
    const char* expect_upload;
    bool expect_fused;
    const char* expect_attention;
  };
  for (const Case& c : {Case{"", "", "", "", true, "copy", true, "flash"},
                        Case{"off", "kernel", "on", "chunked", false, "kernel", true, "chunked"},
                        Case{"on", "copy", "off", "flash", true, "copy", false, "flash"}}) {
    CAPTURE(c.graphs);
    Environment env = default_model_env(dir.path());
    if (*c.graphs != '\0') env.emplace_back("FERRY_DECODE_GRAPHS", c.graphs);
    if (*c.upload != '\0') env.emplace_back("FERRY_ACTIVATION_UPLOAD", c.upload);
    if (*c.fused != '\0') env.emplace_back("FERRY_FUSED_OPS", c.fused);
    if (*c.attention != '\0') env.emplace_back("FERRY_ATTENTION_PATH", c.attention);
    const Result r = run_ferry({"bench", "-p", "4", "-n", "2", "-r", "1", "--policy", "cpu-all", "-o", "json"},
                               dir.path(), false, env);
    REQUIRE_MESSAGE(r.status == 0, r.err);
    const json report = json::parse(r.out);
    CHECK(report["engine"]["decode_graphs"] == c.expect_graphs);
    CHECK(report["engine"]["activation_upload"] == c.expect_upload);
    CHECK(report["engine"]["fused_ops"] == c.expect_fused);
    CHECK(report["engine"]["attention_path"] == c.expect_attention);
  }
  for (const char* variable : {"FERRY_DECODE_GRAPHS", "FERRY_FUSED_OPS", "FERRY_ATTENTION_PATH"}) {
    CAPTURE(variable);
    Environment bad = default_model_env(dir.path());
    bad.emplace_back(variable, "maybe");
    const Result r =
        run_ferry({"bench", "-p", "4", "-n", "2", "-r", "1", "--policy", "cpu-all"}, dir.path(), false, bad);
    CHECK(r.status == 2);
    CHECK_MESSAGE(contains(r.err, std::string(variable) + "='maybe'"), r.err);
    CHECK(r.out.empty());
  }
}

TEST_CASE("ferry bench --link-gbps: every form says the link is simulated, or why it had no effect") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const Result r = run_ferry({"bench", "-p", "8", "-n", "2", "-r", "1", "--policy", "cpu-all,stream-all", "--link-gbps",
                              "12", "--out-dir", out.string()},
                             dir.path(), false, default_model_env(dir.path()));
  REQUIRE_MESSAGE(r.status == 0, r.err);
  CHECK_MESSAGE(contains(r.out, "**simulated link**"), r.out);
  CHECK(contains(r.out, "12 GB/s"));
  std::vector<std::string> header;
  const auto rows = md_rows(r.out, header);
  REQUIRE(header.size() == 7);
  CHECK(header[4] == "link");
  const json report = json::parse(read_text(out / "bench.json"));
  CHECK(report["simulated_link_gbps"] == 12.0);
  CHECK(report["parameters"]["simulated_link_gbps"] == 12.0);
  const bool gpu = report["device"]["gpu"].get<bool>();
  for (const json& arm : report["arms"]) {
    CAPTURE(arm["policy"].get<std::string>());
    // cpu-all never copies; stream-all copies every layer when a GPU is there (and is skipped otherwise).
    if (arm["policy"] == "stream-all" && gpu) {
      CHECK(arm["simulated_link_gbps"] == 12.0);
      CHECK(contains(arm["link"].get<std::string>(), "simulated"));
    } else {
      CHECK(arm["simulated_link_gbps"].is_null());
    }
  }
  for (const auto& row : rows)
    if (row[1] == "cpu-all") CHECK(contains(row[4], "no effect"));
  const auto records = parse_csv(read_text(out / "bench.csv"));
  REQUIRE(records.size() == 1 + 2 * 2);
}

TEST_CASE("ferry bench: every flag is checked before the model is loaded, naming the flag") {
  TempDir dir;
  const std::string missing = (dir.path() / "not_loaded.gguf").string();
  struct Case {
    std::vector<std::string> flags;
    std::vector<std::string> mentioned;
  };
  const std::vector<Case> cases = {
      {{"--vram", "garbage"}, {"--vram", "garbage"}},
      {{"--vram", "8GiB,,4GiB"}, {"--vram", "empty item"}},
      {{"--vram", "8GiB,8192MiB"}, {"--vram", "same budget"}},
      {{"--policy", "nope"}, {"--policy", "nope"}},
      {{"--policy", "cpu-all,cpu-all"}, {"--policy", "twice"}},
      {{"--policy", ""}, {"--policy", "empty item"}},
      {{"-p", "-1"}, {"--prompt"}},
      {{"-n", "x"}, {"--gen"}},
      {{"-p", "0", "-n", "0"}, {"--prompt", "--gen", "nothing to measure"}},
      {{"-r", "0"}, {"--reps"}},
      {{"-o", "xml"}, {"--output", "xml"}},
      {{"--timeline"}, {"--timeline", "--out-dir"}},
      {{"--link-gbps", "0"}, {"--link-gbps", "not a positive rate"}},
      {{"--link-gbps", "-12"}, {"--link-gbps", "'-12'"}},
      {{"--link-gbps", "nan"}, {"--link-gbps", "'nan'"}},
      {{"--link-gbps", "1e3"}, {"--link-gbps", "'1e3'"}},
      {{"--link-gbps", "20000"}, {"--link-gbps", "faster than any host link"}},
      {{"--prefetch", "9"}, {"--prefetch"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"bench", missing};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const std::string command = command_line(args);
    CAPTURE(command);
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK_MESSAGE(!contains(r.err, "not_loaded.gguf"), r.err);
    for (const std::string& text : c.mentioned)
      CHECK_MESSAGE(contains(r.err, text), "missing '" << text << "': " << r.err);
  }
  // An --out-dir that is a file is a usage error too, found before loading.
  const fs::path file = dir.path() / "a_file";
  std::ofstream(file) << "x";
  const Result r = run_ferry({"bench", missing, "--out-dir", file.string()}, dir.path());
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--out-dir"), r.err);
}

TEST_CASE("ferry bench: tests longer than the model's context are refused, naming the flag and the context") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();  // a training context of 512 tokens
  const Result prompt = run_ferry({"bench", model, "-p", "600", "-n", "4", "-r", "1"}, dir.path());
  CHECK(prompt.status == 2);
  CHECK_MESSAGE(contains(prompt.err, "--prompt"), prompt.err);
  CHECK(contains(prompt.err, "512"));
  const Result gen = run_ferry({"bench", model, "-p", "4", "-n", "700", "-r", "1"}, dir.path());
  CHECK(gen.status == 2);
  CHECK_MESSAGE(contains(gen.err, "--gen"), gen.err);
}

TEST_CASE("ferry run --link-gbps: reported with the run; a bad rate is refused naming the flag") {
  TempDir dir;
  const std::string model = make_tiny_model(dir.path()).string();
  const Result ok = run_ferry({"run", model, "-n", "2", "-p", "Hi", "--link-gbps", "12.5"}, dir.path());
  REQUIRE_MESSAGE(ok.status == 0, ok.err);
  CHECK_MESSAGE(contains(ok.err, "link:"), ok.err);
  const Result bad = run_ferry({"run", model, "-n", "2", "--link-gbps", "fast"}, dir.path());
  CHECK(bad.status == 2);
  CHECK_MESSAGE(contains(bad.err, "--link-gbps"), bad.err);
  CHECK(contains(bad.err, "'fast'"));
}

namespace {

fs::path make_flux_tiny(const fs::path& dir) {
  const fs::path path = dir / "flux-tiny-q8_0.gguf";
  const Result r = run_ferry(
      {"make-model", "--arch", "flux", "--preset", "flux-tiny", "--type", "q8_0", "--seed", "5", "-o", path.string()},
      dir);
  REQUIRE_MESSAGE(r.status == 0, r.err);
  return path;
}

}  // namespace

TEST_CASE("ferry bench of a Flux model: one test `step` in seconds per step; its markdown, JSON and CSV agree") {
  TempDir dir;
  const std::string model = make_flux_tiny(dir.path()).string();
  const fs::path out = dir.path() / "out";
  const Result r = run_ferry({"bench", model, "--image", "128x96", "--txt", "16", "-r", "3", "--vram", "1GiB,2GiB",
                              "--policy", "cpu-all,resident-stream,auto", "--out-dir", out.string(), "-o", "json"},
                             dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const json report = json::parse(r.out);
  CHECK(json::parse(read_text(out / "bench.json")) == report);
  CHECK(report["architecture"] == "flux");
  CHECK(report["model"]["n_double"] == 2);
  CHECK(report["model"]["n_single"] == 2);
  CHECK(report["parameters"]["image"] == json{{"width", 128}, {"height", 96}});
  CHECK(report["parameters"]["image_tokens"] == 8 * 6);
  CHECK(report["parameters"]["text_tokens"] == 16);
  CHECK_FALSE(report["parameters"].contains("prompt"));  // a llama parameter has no meaning here
  const bool gpu = report["device"]["gpu"].get<bool>();
  REQUIRE(report["arms"].size() == 6);

  // JSON: one test `step` per arm that ran, its statistics those of its samples, every sample positive and finite.
  std::map<ArmKey, Stats> from_json;
  std::vector<std::string> expected_order;
  for (const json& arm : report["arms"]) {
    const std::string vram = arm["vram"], policy = arm["policy"];
    expected_order.push_back(vram + " " + policy);
    CAPTURE(vram);
    CAPTURE(policy);
    if (policy != "cpu-all" && !gpu) {
      CHECK(arm["status"] == "skipped");
      CHECK(contains(arm["reason"].get<std::string>(), "no GPU"));
      CHECK(arm["tests"].empty());
      continue;
    }
    REQUIRE(arm["status"] == "ok");
    REQUIRE(arm["tests"].size() == 1);
    const json& t = arm["tests"][0];
    CHECK(t["name"] == "step");
    CHECK(t["kind"] == "step");
    CHECK(t["unit"] == "s/step");
    CHECK(t["tokens"] == 8 * 6 + 16);
    CHECK_FALSE(t.contains("mean_tps"));
    const auto samples = t["samples_s"].get<std::vector<double>>();
    REQUIRE(samples.size() == 3);
    for (double s : samples) CHECK((std::isfinite(s) && s > 0));
    const Stats s = stats_of(samples);
    CHECK(t["mean_s"].get<double>() == doctest::Approx(s.mean).epsilon(1e-12));
    CHECK(t["stddev_s"].get<double>() == doctest::Approx(s.stddev).epsilon(1e-9));
    std::vector<double> sorted = samples;
    std::sort(sorted.begin(), sorted.end());
    CHECK(t["median_s"].get<double>() == sorted[1]);
    from_json[{vram, policy, "step"}] = s;
    // img_in, the blocks, the final layer: every layer placed once.
    CHECK(arm["plan"]["resident"].get<int>() + arm["plan"]["streamed"].get<int>() + arm["plan"]["cpu"].get<int>() +
              arm["plan"]["phased"].get<int>() ==
          report["model"]["n_layer"].get<int>() + 2);
    CHECK_FALSE(arm["plan"]["summary"].get<std::string>().empty());
    // One Flux call takes every image and text token at once.
    CHECK(arm["plan"]["step_tokens"].get<int64_t>() ==
          report["parameters"]["image_tokens"].get<int64_t>() + report["parameters"]["text_tokens"].get<int64_t>());
    if (policy == "cpu-all") CHECK(arm["memory"]["uses_device"] == false);
  }
  REQUIRE_FALSE(from_json.empty());

  // Markdown: the unit in the header, one row per arm; the same means and deviations (printed with four decimals).
  std::vector<std::string> header;
  const std::string md = read_text(out / "bench.md");
  const auto rows = md_rows(md, header);
  REQUIRE(header == std::vector<std::string>{"budget", "policy", "plan", "device peak / budget", "test", "s/step"});
  CHECK(contains(md, "128x96 image: 48 image + 16 text tokens"));
  std::map<ArmKey, Stats> from_md;
  std::vector<std::string> md_order;
  for (const auto& row : rows) {
    REQUIRE(row.size() == header.size());
    md_order.push_back(row[0] + " " + row[1]);
    if (row[2].starts_with("skipped")) {
      CHECK(row[5].empty());
      continue;
    }
    CHECK(row[4] == "step");
    const size_t pm = row[5].find(" ± ");
    REQUIRE(pm != std::string::npos);
    from_md[{row[0], row[1], row[4]}] = {std::stod(row[5].substr(0, pm)), std::stod(row[5].substr(pm + 4))};
  }
  CHECK(md_order == expected_order);
  REQUIRE(from_md.size() == from_json.size());
  for (const auto& [key, s] : from_json) {
    CAPTURE(std::get<0>(key) + " " + std::get<1>(key));
    REQUIRE(from_md.count(key) == 1);
    CHECK(std::abs(from_md[key].mean - s.mean) <= 0.00005 + 1e-12);
    CHECK(std::abs(from_md[key].stddev - s.stddev) <= 0.00005 + 1e-12);
  }

  // CSV: a record per arm; seconds per step in mean_s/stddev_s, no rate, the unit named.
  const auto records = parse_csv(read_text(out / "bench.csv"));
  REQUIRE(records.size() == 1 + 6);
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < records[0].size(); ++i) at[records[0][i]] = i;
  for (const char* needed : {"vram", "policy", "status", "test", "mean_tps", "mean_s", "stddev_s", "unit", "reason"})
    REQUIRE_MESSAGE(at.count(needed) == 1, needed);
  size_t ran = 0;
  for (size_t i = 1; i < records.size(); ++i) {
    const auto& rec = records[i];
    REQUIRE(rec.size() == records[0].size());
    CHECK(rec[at["test"]] == "step");
    CHECK(rec[at["unit"]] == "s/step");
    CHECK(rec[at["mean_tps"]].empty());
    if (rec[at["status"]] != "ok") {
      CHECK(rec[at["mean_s"]].empty());
      CHECK_FALSE(rec[at["reason"]].empty());
      continue;
    }
    ++ran;
    const ArmKey key{rec[at["vram"]], rec[at["policy"]], "step"};
    REQUIRE(from_json.count(key) == 1);
    CHECK(std::stod(rec[at["mean_s"]]) == doctest::Approx(from_json[key].mean).epsilon(1e-5));
    CHECK(std::stod(rec[at["stddev_s"]]) == doctest::Approx(from_json[key].stddev).epsilon(1e-3));
  }
  CHECK(ran == from_json.size());
  CHECK(fs::exists(out / "bench-phases.svg"));
}

TEST_CASE("ferry bench of a Flux model: --timeline traces one denoising step") {
  TempDir dir;
  const std::string model = make_flux_tiny(dir.path()).string();
  const fs::path out = dir.path() / "out";
  const Result r = run_ferry({"bench", model, "--image", "64x64", "--txt", "8", "-r", "1", "--policy", "cpu-all",
                              "--timeline", "--out-dir", out.string()},
                             dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const std::string svg = read_text(out / "bench-timeline.svg");
  CHECK(contains(svg, "data-phase=\"one denoising step\""));
  CHECK(contains(svg, "class=\"span\""));  // the step's CPU spans are drawn
  CHECK_FALSE(contains(svg, "prefill"));
  CHECK(contains(read_text(out / "bench-phases.svg"), "data-test=\"step\""));
  CHECK(contains(read_text(out / "bench-trace.json"), "traceEvents"));
}

TEST_CASE("ferry bench of a Flux model: a budget too small is a refused row (with a GPU; skipped without)") {
  TempDir dir;
  const std::string model = make_flux_tiny(dir.path()).string();
  const Result r = run_ferry({"bench", model, "--image", "64x64", "--txt", "8", "-r", "1", "--vram", "1KiB", "--policy",
                              "resident-stream,cpu-all", "-o", "json"},
                             dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);  // as for a llama model: a refused arm is a result, not a failure
  const json report = json::parse(r.out);
  REQUIRE(report["arms"].size() == 2);
  const json& arm = report["arms"][0];
  CHECK(arm["status"] == (report["device"]["gpu"].get<bool>() ? "refused" : "skipped"));
  CHECK_FALSE(arm["reason"].get<std::string>().empty());
  CHECK(arm["tests"].empty());
  CHECK(report["arms"][1]["status"] == "ok");  // cpu-all needs no device memory
}

TEST_CASE("ferry bench: -p/-n are refused for a Flux model and --image/--txt for a llama one, naming the flag") {
  TempDir dir;
  const std::string flux = make_flux_tiny(dir.path()).string();
  const std::string llama = make_tiny_model(dir.path()).string();
  struct Case {
    std::string model;
    std::vector<std::string> flags;
    std::string flag, says;
  };
  const std::vector<Case> cases = {
      {flux, {"-p", "16"}, "--prompt", "Flux model"},
      {flux, {"--gen", "4"}, "--gen", "Flux model"},
      {flux, {"-p", "512", "-n", "128"}, "--prompt", "--image"},  // the defaults' values, given: still refused
      {llama, {"--image", "64x64"}, "--image", "not Flux"},
      {llama, {"--txt", "8"}, "--txt", "not Flux"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"bench", c.model, "-r", "1", "--policy", "cpu-all"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    CAPTURE(command_line(args));
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK_MESSAGE(contains(r.err, c.flag), r.err);
    CHECK_MESSAGE(contains(r.err, c.says), r.err);
    CHECK_MESSAGE(!contains(r.err, "loading"), r.err);  // refused before any arm was loaded
  }
  // Bad workload flags are usage errors before the model is read.
  const std::string missing = (dir.path() / "not_loaded.gguf").string();
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--image", "100x100"}, std::vector<std::string>{"--txt", "0"}}) {
    std::vector<std::string> args = {"bench", missing};
    args.insert(args.end(), flags.begin(), flags.end());
    const Result r = run_ferry(args, dir.path());
    CHECK(r.status == 2);
    CHECK_MESSAGE(contains(r.err, flags[0]), r.err);
  }
}

TEST_CASE("ferry bench --plan of a Flux model runs the plan file's placements (as `ferry plan --json` wrote them)") {
  TempDir dir;
  const std::string model = make_flux_tiny(dir.path()).string();
  const fs::path plan = dir.path() / "plan.json";
  const Result p = run_ferry(
      {"plan", model, "--policy", "cpu-all", "--vram", "3GiB", "--image", "64x64", "--txt", "8", "--json"}, dir.path());
  REQUIRE_MESSAGE(p.status == 0, p.err);
  std::ofstream(plan) << p.out;
  const Result r = run_ferry(
      {"bench", model, "--plan", plan.string(), "--image", "64x64", "--txt", "8", "-r", "1", "-o", "json"}, dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const json report = json::parse(r.out);
  REQUIRE(report["arms"].size() == 1);  // one arm at the file's budget, with the policy its placements make
  const json& arm = report["arms"][0];
  CHECK(arm["vram_bytes"] == uint64_t{3} << 30);
  CHECK(arm["policy"] == "cpu-all");
  REQUIRE(arm["status"] == "ok");
  CHECK_MESSAGE(contains(arm["plan"]["summary"].get<std::string>(), "plan file"), arm["plan"]["summary"]);
  CHECK(arm["plan"]["cpu"] == report["model"]["n_layer"].get<int>() + 2);
  CHECK(arm["tests"][0]["name"] == "step");
}

TEST_CASE("ferry bench of a Flux model --link-gbps: the simulated link is named, and marked on the arms it paced") {
  TempDir dir;
  const std::string model = make_flux_tiny(dir.path()).string();
  const Result r = run_ferry({"bench", model, "--image", "64x64", "--txt", "8", "-r", "1", "--policy",
                              "cpu-all,stream-all", "--link-gbps", "12", "-o", "json"},
                             dir.path());
  REQUIRE_MESSAGE(r.status == 0, r.err);
  const json report = json::parse(r.out);
  CHECK(report["simulated_link_gbps"] == 12.0);
  const bool gpu = report["device"]["gpu"].get<bool>();
  for (const json& arm : report["arms"]) {
    CAPTURE(arm["policy"].get<std::string>());
    // stream-all copies every layer of a Flux model too, so its copies are paced when a GPU is there.
    if (arm["policy"] == "stream-all" && gpu)
      CHECK(arm["simulated_link_gbps"] == 12.0);
    else
      CHECK(arm["simulated_link_gbps"].is_null());
  }
}
