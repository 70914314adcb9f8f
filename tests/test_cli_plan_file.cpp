// `--plan FILE` and `--resident/--stream/--cpu REGEX` as a user runs them: a plan written by `ferry plan --json` and
// read back by `ferry plan --plan` and `ferry run --plan` gives the same placement; a hand-edited plan is honoured;
// malformed plans are refused naming the JSON key (exit 1); overrides are honoured or refused with the reason (exit 2
// for a bad flag, 1 for a plan that cannot run). GPU plans are made for a card described by a device profile, since the
// machines the suite runs on may have none.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

struct Fixture {
  TempDir dir;
  fs::path model = dir.path() / "small-f32.gguf";
  fs::path card = dir.path() / "card.json";
  RunSpec spec;  // an empty cache: no calibration of this machine leaks in

  Fixture() {
    // 'small' in F32: four blocks of ~12 MB.
    REQUIRE(
        run_ferry({"make-model", "--preset", "small", "--type", "f32", "-o", model.string()}, dir.path(), {}).status ==
        0);
    std::ofstream(card) << R"({"name": "Example 8GB card", "has_gpu": true, "context_bytes": 314572800})";
    spec.env = {{"FERRY_CACHE_DIR", (dir.path() / "cache").string()}};
  }

  Result ferry(std::vector<std::string> args) { return run_ferry(args, dir.path(), spec); }
  // `ferry plan` of the model for the card, with extra flags.
  Result plan(std::vector<std::string> extra) {
    std::vector<std::string> args = {"plan", model.string(), "--ctx", "256", "--device-profile", card.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return ferry(args);
  }
  fs::path write(const std::string& name, const nlohmann::json& j) {
    const fs::path p = dir.path() / name;
    std::ofstream(p) << j.dump(2);
    return p;
  }
};

nlohmann::json parsed(const Result& r) {
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  return nlohmann::json::parse(r.out);
}

std::vector<std::string> placements(const nlohmann::json& plan) {
  std::vector<std::string> p;
  for (const auto& l : plan["layers"]) p.push_back(l["placement"]);
  return p;
}

}  // namespace

TEST_CASE("a plan round-trips: plan --json, then plan --plan and run --plan give the same placement") {
  Fixture fx;
  // A budget between "everything resident" and "everything streamed", so the plan mixes placements.
  const nlohmann::json all = parsed(fx.plan({"--vram", "8GiB", "--json"}));
  const nlohmann::json none = parsed(fx.plan({"--vram", "8GiB", "--json", "--policy", "stream-all"}));
  const uint64_t mid =
      (all["memory"]["required_budget"].get<uint64_t>() + none["memory"]["required_budget"].get<uint64_t>()) / 2;
  const nlohmann::json first = parsed(fx.plan({"--vram", std::to_string(mid), "--json"}));
  const std::vector<std::string> written = placements(first);
  CHECK(std::count(written.begin(), written.end(), "resident") > 0);
  CHECK(std::count(written.begin(), written.end(), "streamed") > 0);
  const fs::path file = fx.write("plan.json", first);
  // Read back with no --vram: the file's budget and placement, the same memory.
  const nlohmann::json again = parsed(fx.plan({"--plan", file.string(), "--json"}));
  CHECK(placements(again) == written);
  CHECK(again["budget_bytes"] == first["budget_bytes"]);
  CHECK(again["memory"]["total_bytes"] == first["memory"]["total_bytes"]);
  CHECK(again["policy"] == "plan file " + file.string());

  // On this machine (no GPU assumed: the empty device profile is what `plan` sees without --device-profile when there
  // is none) the CPU plan round-trips through `run --plan`.
  const nlohmann::json here = parsed(fx.ferry({"plan", fx.model.string(), "--ctx", "64", "--json"}));
  if (here["device"]["has_gpu"].get<bool>()) return;  // a GPU machine: the GPU tests run real plans
  const fs::path cpu_file = fx.write("cpu.json", here);
  const Result r = fx.ferry({"run", fx.model.string(), "--ctx", "64", "-n", "3", "--plan", cpu_file.string()});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.err, "ferry: placements from the plan file " + cpu_file.string()));
  CHECK(contains(r.err, "placement:  4 blocks: 4 cpu; output head: cpu (--plan " + cpu_file.string()));
}

TEST_CASE("--phased: each layer's placement per phase in the table and the JSON, and the plan round-trips") {
  Fixture fx;
  const nlohmann::json first =
      parsed(fx.plan({"--vram", "8GiB", "--json", "--policy", "resident-stream", "--phased", "blk\\.(1|2)"}));
  CHECK(placements(first) == std::vector<std::string>{"resident", "phased", "phased", "resident", "resident"});
  CHECK(first["phased_cpu_max_tokens"] == 8);  // StackOptions' default: no `auto` to compute one
  CHECK(contains(first["summary"].get<std::string>(), "2 phased"));
  for (size_t i = 0; i < 5; ++i) {
    CAPTURE(i);
    const nlohmann::json& l = first["layers"][i];
    const bool phased = i == 1 || i == 2;
    CHECK(l["prompt_placement"] == (phased ? "streamed" : "resident"));  // steps of 256 tokens: more than 8
    CHECK(l["decode_placement"] == (phased ? "cpu" : "resident"));
  }
  const Result text = fx.plan({"--vram", "8GiB", "--policy", "resident-stream", "--phased", "blk\\.(1|2)"});
  CHECK(text.status == 0);
  CHECK_MESSAGE(contains(text.out, "placement prompt    decode"), text.out);
  CHECK_MESSAGE(contains(text.out, "blk.1            phased    streamed  cpu"), text.out);
  CHECK_MESSAGE(contains(text.out, "phased layers: on the CPU in steps of up to 8 tokens"), text.out);

  // Back through --plan, with the threshold edited: the file's placements and threshold.
  nlohmann::json edited = first;
  edited["phased_cpu_max_tokens"] = 300;  // more than a step: the phased layers never stream
  const fs::path file = fx.write("phased.json", edited);
  const nlohmann::json again = parsed(fx.plan({"--plan", file.string(), "--json"}));
  CHECK(placements(again) == placements(first));
  CHECK(again["phased_cpu_max_tokens"] == 300);
  CHECK(again["layers"][1]["prompt_placement"] == "cpu");
  CHECK(again["layers"][1]["decode_placement"] == "cpu");
  CHECK(again["memory"]["total_bytes"] == first["memory"]["total_bytes"]);

  // --phased and --plan together: a usage error, as the other overrides.
  Result r = fx.plan({"--plan", file.string(), "--phased", "blk\\.1"});
  CHECK(r.status == 2);
  // Without a GPU, a phased layer cannot run (it streams in a prompt).
  const nlohmann::json here = parsed(fx.ferry({"plan", fx.model.string(), "--ctx", "64", "--json"}));
  if (here["device"]["has_gpu"].get<bool>()) return;
  r = fx.ferry({"run", fx.model.string(), "--ctx", "64", "-n", "2", "--phased", "blk\\.2"});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "layer 'blk.2' is forced phased, but there is no GPU"), r.err);
}

TEST_CASE("an edited plan is honoured as written, and reports its predicted and measured rates") {
  Fixture fx;
  nlohmann::json plan = parsed(fx.plan({"--vram", "8GiB", "--json"}));
  REQUIRE(placements(plan) == std::vector<std::string>(5, "resident"));
  plan["layers"][1]["placement"] = "cpu";
  plan["layers"][2]["placement"] = "streamed";
  plan["layers"][4]["placement"] = "CPU";  // case does not matter
  const nlohmann::json edited = parsed(fx.plan({"--plan", fx.write("edited.json", plan).string(), "--json"}));
  CHECK(placements(edited) == std::vector<std::string>{"resident", "cpu", "streamed", "resident", "cpu"});

  // A run on this machine: a plan with every layer on the CPU and the predictions a calibrated machine wrote in it.
  nlohmann::json cpu = parsed(fx.ferry({"plan", fx.model.string(), "--ctx", "64", "--json"}));
  if (cpu["device"]["has_gpu"].get<bool>()) return;
  cpu["predicted"] = {{"prompt_tokens_per_s", 1234.5}, {"generate_tokens_per_s", 67.8}};
  const Result r =
      fx.ferry({"run", fx.model.string(), "--ctx", "64", "-n", "3", "--plan", fx.write("cpu.json", cpu).string()});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.err, "predicted:  prompt 1234.5 tokens/s, generation 67.8 tokens/s (the plan file's"));
  CHECK(contains(r.err, "measured:   prompt "));
}

TEST_CASE("malformed or impossible plan files are refused naming the key (exit 1)") {
  Fixture fx;
  const nlohmann::json good = parsed(fx.plan({"--vram", "8GiB", "--json"}));
  struct Case {
    std::string name;
    nlohmann::json plan;
    std::string expected;
  };
  std::vector<Case> cases;
  nlohmann::json fewer = good;
  fewer["layers"].erase(fewer["layers"].begin() + 4);
  cases.push_back({"fewer", fewer, "layers: 4 entries, but the model has 5 layers (blk.0 .. output)"});
  nlohmann::json unknown = good;
  unknown["layers"][3]["placement"] = "gpu";
  cases.push_back(
      {"unknown", unknown, "layers[3].placement: 'gpu' is not a placement (resident, streamed, cpu or phased)"});
  nlohmann::json renamed = good;
  renamed["layers"][2]["name"] = "blk.7";
  cases.push_back({"renamed", renamed, "layers[2].name: 'blk.7' is not the model's layer 2 'blk.2'"});
  nlohmann::json budget = good;
  budget["budget_bytes"] = good["memory"]["required_budget"].get<uint64_t>() - 1;
  cases.push_back({"budget", budget, "needs "});
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const fs::path file = fx.write(c.name + ".json", c.plan);
    const Result r = fx.plan({"--plan", file.string()});
    CHECK(r.status == 1);
    CHECK_MESSAGE(contains(r.err, "plan file " + file.string()), r.err);
    CHECK_MESSAGE(contains(r.err, c.expected), r.err);
  }
  const fs::path broken = fx.dir.path() / "broken.json";
  std::ofstream(broken) << R"({"layers": [{"name": "blk.0", )";
  Result r = fx.plan({"--plan", broken.string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "plan file " + broken.string() + ": not valid JSON"), r.err);
  r = fx.plan({"--plan", (fx.dir.path() / "missing.json").string()});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "missing.json: cannot be read"), r.err);
  // --vram overrides the file's budget: a budget a byte too small is refused.
  r = fx.plan({"--plan", fx.write("good.json", good).string(), "--vram",
               std::to_string(good["memory"]["required_budget"].get<uint64_t>() - 1)});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "(1 bytes over)"), r.err);
  // With a policy or an override, --plan is a usage error.
  r = fx.plan({"--plan", fx.write("good.json", good).string(), "--policy", "auto"});
  CHECK(r.status == 2);
  r = fx.plan({"--plan", fx.write("good.json", good).string(), "--cpu", "output"});
  CHECK(r.status == 2);
}

TEST_CASE("overrides on the command line: honoured, or refused with the reason") {
  Fixture fx;
  const nlohmann::json p = parsed(fx.plan({"--vram", "8GiB", "--json", "--cpu", "blk\\.[01]", "--stream", "output"}));
  CHECK(placements(p) == std::vector<std::string>{"cpu", "cpu", "resident", "resident", "streamed"});
  // Repeated flags add up.
  const nlohmann::json q = parsed(fx.plan(
      {"--vram", "8GiB", "--json", "--policy", "stream-all", "--resident", "blk\\.0", "--resident", "blk\\.3"}));
  CHECK(placements(q) == std::vector<std::string>{"resident", "streamed", "streamed", "resident", "streamed"});
  // Bad flags: exit 2, naming the flag.
  Result r = fx.plan({"--resident", "blk\\.("});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--resident: 'blk\\.(' is not a valid regular expression"), r.err);
  r = fx.plan({"--cpu", "blk\\.9"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--cpu: 'blk\\.9' matches no layer"), r.err);
  CHECK_MESSAGE(contains(r.err, "blk.0, blk.1, blk.2, blk.3, output"), r.err);
  r = fx.plan({"--cpu", "blk\\.1", "--stream", "blk.*"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "layer 'blk.1' is forced streamed by --stream 'blk.*' and cpu by --cpu 'blk\\.1'"),
                r.err);
  // Every block forced resident under a budget that holds the context and little else: refused (exit 1) with the
  // numbers.
  const uint64_t small =
      parsed(fx.plan({"--vram", "8GiB", "--json", "--policy", "stream-all"}))["memory"]["required_budget"]
          .get<uint64_t>();
  r = fx.plan({"--vram", std::to_string(small), "--resident", "blk\\..*"});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err,
                         "--resident 'blk\\..*' cannot be honoured: with every other layer on the CPU the plan "
                         "needs"),
                r.err);
  CHECK_MESSAGE(contains(r.err, "bytes over"), r.err);

  // `run` on this machine: the CPU can always be forced; a GPU placement without a GPU is refused (exit 1).
  const nlohmann::json here = parsed(fx.ferry({"plan", fx.model.string(), "--ctx", "64", "--json"}));
  if (here["device"]["has_gpu"].get<bool>()) return;
  r = fx.ferry({"run", fx.model.string(), "--ctx", "64", "-n", "2", "--cpu", "blk\\..*"});
  CHECK(r.status == 0);
  CHECK_MESSAGE(contains(r.err, "--cpu 'blk\\..*')"), r.err);
  r = fx.ferry({"run", fx.model.string(), "--ctx", "64", "-n", "2", "--stream", "blk\\.2"});
  CHECK(r.status == 1);
  CHECK_MESSAGE(contains(r.err, "layer 'blk.2' is forced streamed, but there is no GPU"), r.err);
  r = fx.ferry({"chat", fx.model.string(), "--chat-format", "llama2", "--resident", "nothing"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--resident: 'nothing' matches no layer"), r.err);
}

TEST_CASE("bench takes the overrides and the plan file into every arm") {
  Fixture fx;
  const nlohmann::json here = parsed(fx.ferry({"plan", fx.model.string(), "--ctx", "64", "--json"}));
  if (here["device"]["has_gpu"].get<bool>()) return;  // the all-CPU plan below is this machine's
  const fs::path file = fx.write("cpu.json", here);
  Result r = fx.ferry({"bench", fx.model.string(), "--plan", file.string(), "-p", "16", "-n", "4", "-r", "1"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.out, "(placements from the plan file " + file.string() + ")"));
  CHECK(contains(r.out, "pp16"));
  r = fx.ferry({"bench", fx.model.string(), "--policy", "cpu-all", "--stream", "nothing", "-p", "16", "-n", "4"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--stream: 'nothing' matches no layer"), r.err);
}

TEST_CASE("flux-step takes the overrides too") {
  Fixture fx;
  const fs::path flux = fx.dir.path() / "flux-tiny.gguf";
  REQUIRE(fx.ferry({"make-model", "--preset", "flux-tiny", "-o", flux.string()}).status == 0);
  Result r = fx.ferry({"flux-step", flux.string(), "--image", "32x32", "--steps", "1", "--cpu", "double_blocks\\..*"});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK_MESSAGE(contains(r.out, "--cpu 'double_blocks\\..*')"), r.out);
  r = fx.ferry({"flux-step", flux.string(), "--image", "32x32", "--steps", "1", "--stream", "final"});
  CHECK(r.status == 2);
  CHECK_MESSAGE(contains(r.err, "--stream: 'final' matches no layer"), r.err);
  CHECK_MESSAGE(contains(r.err, "final_layer"), r.err);  // the names it could have matched
}
