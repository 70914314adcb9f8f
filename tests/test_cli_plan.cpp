// `ferry plan` as a user runs it: a plan for another machine's card from a device profile, consistent with its own
// numbers at the budget boundary (the required budget keeps every layer resident, a byte less does not, below the
// minimum it is refused with the numbers); made from the header alone; all-CPU and saying so on a machine without a
// GPU; flags and profiles checked with the exit statuses of the README.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "ferry/gguf.hpp"
#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

struct PlanFixture {
  TempDir dir;
  fs::path model = dir.path() / "small-f32.gguf";
  fs::path profile = dir.path() / "card.json";

  PlanFixture() {
    // 'small' in F32: four blocks of ~12 MB, so budgets a few MB apart change the plan.
    REQUIRE(
        run_ferry({"make-model", "--preset", "small", "--type", "f32", "-o", model.string()}, dir.path(), {}).status ==
        0);
    // A card that is not this machine's (which has none in CI): 300 MiB of CUDA context, as measured on an H200.
    std::ofstream(profile) << R"({"name": "Example 8GB card", "has_gpu": true, "context_bytes": 314572800})";
  }

  Result plan(const std::string& vram, const std::string& policy = "resident-stream") {
    return run_ferry({"plan", model.string(), "--vram", vram, "--policy", policy, "--ctx", "256", "--device-profile",
                      profile.string(), "--json"},
                     dir.path(), {});
  }
};

nlohmann::json parsed(const Result& r) {
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  return nlohmann::json::parse(r.out);
}

int count(const nlohmann::json& plan, const std::string& placement) {
  int n = 0;
  for (const auto& l : plan["layers"]) n += l["placement"] == placement;
  return n;
}

}  // namespace

TEST_CASE("ferry plan for another card agrees with its own numbers at the budget boundary") {
  PlanFixture fx;
  const nlohmann::json ample = parsed(fx.plan("8GiB"));
  CHECK(ample["plan_policy"] == "resident-stream");
  CHECK(ample["device"]["name"] == "Example 8GB card");
  CHECK(ample["device"]["context_bytes"] == 314572800);
  REQUIRE(ample["layers"].size() == 5);  // 4 blocks and the output head
  CHECK(count(ample, "resident") == 5);
  CHECK(ample["memory"]["categories"]["context"] == 314572800);
  const uint64_t required = ample["memory"]["required_budget"];
  const uint64_t minimum = ample["memory"]["minimum_budget"];
  CHECK(ample["memory"]["total_bytes"].get<uint64_t>() <= ample["budget_bytes"].get<uint64_t>());
  REQUIRE(minimum < required);

  // Exactly the required budget: the same plan. One byte less: a layer must stream. Each plan stays within its budget.
  const nlohmann::json exact = parsed(fx.plan(std::to_string(required)));
  CHECK(count(exact, "resident") == 5);
  CHECK(exact["memory"]["total_bytes"].get<uint64_t>() <= required);
  const nlohmann::json less = parsed(fx.plan(std::to_string(required - 1)));
  CHECK(count(less, "resident") < 5);
  CHECK(count(less, "streamed") >= 1);
  CHECK(less["memory"]["total_bytes"].get<uint64_t>() <= required - 1);

  // At the minimum every layer streams; below it nothing fits: refused (exit 1) with the smallest budget that works.
  const nlohmann::json at_minimum = parsed(fx.plan(std::to_string(minimum), "stream-all"));
  CHECK(count(at_minimum, "streamed") == 5);
  const Result below = fx.plan(std::to_string(minimum - 1), "stream-all");
  CHECK(below.status == 1);
  CHECK(below.err.find("budget") != std::string::npos);
  CHECK(below.err.find("largest context that fits") != std::string::npos);

  // resident-first puts what does not fit on the CPU instead of streaming it.
  const nlohmann::json first = parsed(fx.plan(std::to_string(required - 1), "resident-first"));
  CHECK(count(first, "cpu") >= 1);
  CHECK(count(first, "streamed") == 0);
}

TEST_CASE("ferry plan reads only the header, and prints a table") {
  PlanFixture fx;
  // The file cut right after its header: `run` cannot use it, `plan` does not need the rest.
  uint64_t data_offset = 0;
  {
    const ferry::GgufFile full = ferry::GgufFile::open(fx.model);
    data_offset = full.data_offset();
  }
  const fs::path cut = fx.dir.path() / "header-only.gguf";
  fs::copy_file(fx.model, cut);
  fs::resize_file(cut, data_offset);
  const Result r =
      run_ferry({"plan", cut.string(), "--vram", "8GiB", "--device-profile", fx.profile.string()}, fx.dir.path(), {});
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("Example 8GB card") != std::string::npos);
  CHECK(r.out.find("5 layers: 5 resident") != std::string::npos);
  CHECK(r.out.find("blk.3") != std::string::npos);
  CHECK(r.out.find("output") != std::string::npos);
  const Result run = run_ferry({"run", cut.string(), "-n", "1"}, fx.dir.path(), {});
  CHECK(run.status == 1);
}

TEST_CASE("ferry plan on this machine without a GPU is all-CPU and says so") {
  PlanFixture fx;
  const Result r = run_ferry({"plan", fx.model.string(), "--vram", "8GiB", "--json"}, fx.dir.path(), {});
  const nlohmann::json plan = parsed(r);
  if (plan["device"]["has_gpu"].get<bool>()) return;  // a GPU machine: covered by the profile tests above
  CHECK(plan["plan_policy"] == "cpu-all");
  CHECK(count(plan, "cpu") == 5);
  CHECK(plan["memory"]["uses_device"] == false);
  CHECK(r.err.find("no GPU") != std::string::npos);
}

TEST_CASE("ferry plan refuses bad flags and bad device profiles") {
  PlanFixture fx;
  Result r = run_ferry({"plan", fx.model.string(), "--vram", "lots"}, fx.dir.path(), {});
  CHECK(r.status == 2);
  CHECK(r.err.find("--vram") != std::string::npos);
  r = run_ferry({"plan", fx.model.string(), "--policy", "fastest"}, fx.dir.path(), {});
  CHECK(r.status == 2);
  CHECK(r.err.find("--policy") != std::string::npos);
  r = run_ferry({"plan", fx.model.string(), "--device-profile", (fx.dir.path() / "none.json").string()}, fx.dir.path(),
                {});
  CHECK(r.status == 2);
  CHECK(r.err.find("--device-profile") != std::string::npos);
  const fs::path broken = fx.dir.path() / "broken.json";
  std::ofstream(broken) << R"({"name": "card", "has_gpu": "yes", "context_bytes": 1})";
  r = run_ferry({"plan", fx.model.string(), "--device-profile", broken.string()}, fx.dir.path(), {});
  CHECK(r.status == 1);
  CHECK(r.err.find(broken.string()) != std::string::npos);
  CHECK(r.err.find("has_gpu") != std::string::npos);
  r = run_ferry({"plan", fx.model.string(), "--ctx", "100000"}, fx.dir.path(), {});
  CHECK(r.status == 2);
  CHECK(r.err.find("--ctx") != std::string::npos);
}

namespace {

RunSpec with_cache(const fs::path& dir) {
  RunSpec spec;
  spec.env = {{"FERRY_CACHE_DIR", dir.string()}};
  return spec;
}

}  // namespace

TEST_CASE(
    "ferry calibrate measures once, keeps it, and measures again when the cache is corrupt or another machine's") {
  TempDir dir;
  const fs::path cache = dir.path() / "cache";
  const RunSpec spec = with_cache(cache);
  Result r = run_ferry({"calibrate"}, dir.path(), spec);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("measuring: no calibration yet") != std::string::npos);
  CHECK(r.out.find("GEMV Q4_0") != std::string::npos);
  const fs::path file = cache / "device-profile.json";
  REQUIRE(fs::exists(file));
  auto read_json = [](const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
  };
  nlohmann::json profile = read_json(file);
  CHECK(profile["cpu_gemm_flops"].get<double>() > 0);
  CHECK(profile["cpu_gemv_bytes_per_s"]["Q4_K"].get<double>() > 0);
  CHECK(profile["cpu_threads"].get<int>() >= 1);

  // Kept: the second call shows it without measuring.
  r = run_ferry({"calibrate", "--json"}, dir.path(), spec);
  CHECK(r.status == 0);
  CHECK(r.err.find("the calibration of this machine") != std::string::npos);
  CHECK(nlohmann::json::parse(r.out)["cpu_gemm_flops"] == profile["cpu_gemm_flops"]);

  // Corrupt: measured again, and the file is whole again.
  std::ofstream(file) << R"({"name": "none", "has_gpu": false, "context_b)";
  r = run_ferry({"calibrate"}, dir.path(), spec);
  CHECK(r.status == 0);
  CHECK(r.err.find("corrupt") != std::string::npos);
  CHECK(read_json(file)["cpu_gemm_flops"].get<double>() > 0);

  // Another machine's (more threads than this one has): not trusted, measured again.
  profile = read_json(file);
  profile["cpu_threads"] = profile["cpu_threads"].get<int>() + 64;
  std::ofstream(file) << profile.dump();
  r = run_ferry({"calibrate"}, dir.path(), spec);
  CHECK(r.status == 0);
  CHECK(r.err.find("another machine") != std::string::npos);
  CHECK(read_json(file)["cpu_threads"] == profile["cpu_threads"].get<int>() - 64);
}

TEST_CASE("ferry plan predicts times once the device has rates, and auto plans from them") {
  PlanFixture fx;
  const fs::path cache = fx.dir.path() / "cache";
  const RunSpec spec = with_cache(cache);
  // Without a calibration: no prediction, and auto says it planned as resident-stream.
  Result r = run_ferry(
      {"plan", fx.model.string(), "--ctx", "256", "--policy", "auto", "--device-profile", fx.profile.string()},
      fx.dir.path(), spec);
  CHECK(r.status == 0);
  CHECK(r.out.find("predicted: no measured rates") != std::string::npos);
  CHECK(r.out.find("note: auto: the device profile has no measured rates") != std::string::npos);

  // This machine calibrated: the plan on it predicts (all on the CPU here, or whatever the GPU allows).
  REQUIRE(run_ferry({"calibrate"}, fx.dir.path(), spec).status == 0);
  r = run_ferry({"plan", fx.model.string(), "--ctx", "256", "--json", "--prompt", "64", "--gen", "16"}, fx.dir.path(),
                spec);
  const nlohmann::json here = parsed(r);
  REQUIRE(here["predicted"].is_object());
  CHECK(here["predicted"]["prompt_tokens"] == 64);
  CHECK(here["predicted"]["generate_tokens_per_s"].get<double>() > 0);
  CHECK(here["predicted"]["decode_step_layers"].size() == 5);

  // A calibrated profile of another card (this machine's CPU rates plus a GPU's): auto chooses, within the budget.
  std::ifstream in(cache / "device-profile.json");
  nlohmann::json card = nlohmann::json::parse(in);
  card["name"] = "a calibrated card";
  card["has_gpu"] = true;
  card["context_bytes"] = 314572800;
  card["link"] = {{{"bytes", 1 << 20}, {"bytes_per_s", 2.5e10}}};
  card["gpu_gemv_bytes_per_s"] = {{"F32", 2e12}};
  card["gpu_gemm_flops"] = 4e14;
  const fs::path card_path = fx.dir.path() / "calibrated-card.json";
  std::ofstream(card_path) << card.dump();
  for (const char* vram : {"8GiB", "640MiB"}) {
    CAPTURE(vram);
    r = run_ferry({"plan", fx.model.string(), "--ctx", "256", "--json", "--policy", "auto", "--vram", vram,
                   "--device-profile", card_path.string()},
                  fx.dir.path(), spec);
    const nlohmann::json plan = parsed(r);
    CHECK(plan["plan_policy"] == "auto");
    CHECK(plan["note"] == "");
    CHECK(plan["memory"]["total_bytes"].get<uint64_t>() <= plan["budget_bytes"].get<uint64_t>());
    REQUIRE(plan["predicted"].is_object());
    // A GPU 2e12 B/s against a CPU of a few GB/s: whatever fits goes to the GPU.
    if (std::string(vram) == "8GiB") CHECK(count(plan, "resident") == 5);
  }
}

TEST_CASE("run --policy auto without measured rates says what it ran instead") {
  PlanFixture fx;
  const Result r = run_ferry({"run", fx.model.string(), "-n", "2", "--ctx", "64", "--policy", "auto"}, fx.dir.path(),
                             with_cache(fx.dir.path() / "empty-cache"));
  INFO(r.err);
  CHECK(r.status == 0);
  // Without a GPU every policy runs on the CPU, and that is what it says; with one, auto says it fell back.
  const bool no_gpu = r.err.find("ferry: no GPU") != std::string::npos;
  CHECK((no_gpu || r.err.find("auto: the device profile has no measured rates") != std::string::npos));
}
