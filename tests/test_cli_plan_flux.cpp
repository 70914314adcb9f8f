// `ferry plan` of a Flux file (the flux-tiny preset): recognised from general.architecture, planned for the steps of
// --image and --txt, printed as the same table and JSON as a llama plan with the prediction in seconds per step; an
// impossible budget refused with the smallest that works; flags that do not apply refused; and the JSON it writes run
// as it is by `ferry flux-step --plan`.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "ferry/policies/device_profile.hpp"
#include "support/ferry_process.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace ferry::test;

namespace {

struct FluxPlanFixture {
  TempDir dir;
  fs::path model = dir.path() / "flux-tiny.gguf";
  fs::path card = dir.path() / "card.json";         // another machine's card, no rates
  fs::path rated = dir.path() / "rated-card.json";  // the same with measured rates

  FluxPlanFixture() {
    const Result r = run_ferry(
        {"make-model", "--preset", "flux-tiny", "--type", "q8_0", "--seed", "14", "-o", model.string()}, dir.path());
    REQUIRE_MESSAGE(r.status == 0, r.err);
    std::ofstream(card) << R"({"name": "Example 8GB card", "has_gpu": true, "context_bytes": 314572800})";
    ferry::DeviceProfile d{"a rated card", true, 314572800};
    d.link = {{1 << 20, 2.5e10}};
    d.gpu_gemv_bytes_per_s = {{"Q8_0", 2e12}, {"F16", 2e12}, {"F32", 2e12}};
    d.gpu_gemm_flops = 4e14;
    d.cpu_gemv_bytes_per_s = {{"Q8_0", 5e10}, {"F16", 5e10}, {"F32", 5e10}};
    d.cpu_gemm_flops = 1e12;
    d.cpu_threads = 2;
    d.host_read_bytes_per_s = 5e10;
    std::ofstream(rated) << d.to_json();
  }

  Result plan(std::vector<std::string> args) {
    args.insert(args.begin(), {"plan", model.string()});
    return run_ferry(args, dir.path());
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

TEST_CASE("ferry plan of a Flux file prints the layers, memory and seconds per step of 1024x1024 + 512 tokens") {
  FluxPlanFixture fx;
  Result r = fx.plan({"--vram", "8GiB", "--device-profile", fx.card.string()});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("(flux, 2 double + 2 single blocks, width 256, guidance)") != std::string::npos);
  CHECK(r.out.find("image 1024x1024, steps of 4096 image + 512 text tokens") != std::string::npos);
  CHECK(r.out.find("6 layers: 6 resident") != std::string::npos);
  for (const char* name : {"img_in", "double_blocks.1", "single_blocks.1", "final_layer"})
    CHECK(r.out.find(name) != std::string::npos);
  CHECK(r.out.find("device memory:") != std::string::npos);
  CHECK(r.out.find("predicted: no measured rates") != std::string::npos);

  // With rates: the step's time, each layer's.
  r = fx.plan({"--vram", "8GiB", "--device-profile", fx.rated.string(), "--image", "512x256", "--txt", "77"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("steps of 512 image + 77 text tokens") != std::string::npos);
  CHECK(r.out.find("s per step (512 image + 77 text tokens)") != std::string::npos);
  CHECK(r.out.find("compute s") != std::string::npos);
}

TEST_CASE("ferry plan --json of a Flux file: the plan keys, the workload and the predicted step") {
  FluxPlanFixture fx;
  nlohmann::json j = parsed(fx.plan({"--vram", "8GiB", "--device-profile", fx.card.string(), "--json"}));
  for (const char* key :
       {"model", "architecture", "policy", "plan_policy", "budget_bytes", "max_tokens", "device", "summary", "memory",
        "host", "layers", "note", "predicted", "image", "image_tokens", "text_tokens"})
    CHECK_MESSAGE(j.contains(key), key);
  CHECK(j["architecture"] == "flux");
  CHECK(j["image"]["width"] == 1024);
  CHECK(j["image"]["height"] == 1024);
  CHECK(j["image_tokens"] == 4096);
  CHECK(j["text_tokens"] == 512);
  CHECK(j["max_tokens"] == 4608);
  CHECK(j["predicted"].is_null());
  REQUIRE(j["layers"].size() == 6);
  CHECK(j["layers"][1]["name"] == "double_blocks.0");
  CHECK(j["layers"][1]["weight_bytes"].get<uint64_t>() > 0);
  for (const char* key : {"total_bytes", "required_budget", "minimum_budget", "categories"})
    CHECK_MESSAGE(j["memory"].contains(key), key);
  CHECK(j["memory"]["total_bytes"].get<uint64_t>() <= j["budget_bytes"].get<uint64_t>());

  j = parsed(
      fx.plan({"--vram", "8GiB", "--device-profile", fx.rated.string(), "--json", "--image", "256x128", "--txt", "9"}));
  CHECK(j["image_tokens"] == 128);
  CHECK(j["text_tokens"] == 9);
  CHECK(j["max_tokens"] == 137);
  REQUIRE(j["predicted"].is_object());
  CHECK(j["predicted"]["seconds_per_step"].get<double>() > 0);
  CHECK(j["predicted"]["image_tokens"] == 128);
  CHECK(j["predicted"]["text_tokens"] == 9);
  CHECK(j["predicted"]["step_layers"].size() == 6);
}

TEST_CASE("ferry plan of a Flux file refuses an impossible budget with the smallest that works, and bad flags") {
  FluxPlanFixture fx;
  const nlohmann::json ample = parsed(fx.plan({"--vram", "8GiB", "--device-profile", fx.card.string(), "--json"}));
  const uint64_t minimum = ample["memory"]["minimum_budget"];
  const nlohmann::json at_minimum = parsed(fx.plan(
      {"--vram", std::to_string(minimum), "--policy", "stream-all", "--device-profile", fx.card.string(), "--json"}));
  CHECK(count(at_minimum, "streamed") == 6);
  Result r =
      fx.plan({"--vram", std::to_string(minimum - 1), "--policy", "stream-all", "--device-profile", fx.card.string()});
  CHECK(r.status == 1);
  CHECK(r.err.find("below the minimum for this stack") != std::string::npos);
  CHECK(r.err.find(std::to_string(minimum) + " bytes") != std::string::npos);

  r = fx.plan({"--image", "1000x1000"});
  CHECK(r.status == 2);
  CHECK(r.err.find("--image") != std::string::npos);
  CHECK(r.err.find("1008x1008") != std::string::npos);
  r = fx.plan({"--txt", "-3"});
  CHECK(r.status == 2);
  CHECK(r.err.find("--txt") != std::string::npos);

  // --image and --txt are Flux's: a llama file refuses them by name.
  const fs::path llama = fx.dir.path() / "tiny.gguf";
  REQUIRE(run_ferry({"make-model", "--preset", "tiny", "-o", llama.string()}, fx.dir.path()).status == 0);
  r = run_ferry({"plan", llama.string(), "--image", "512x512"}, fx.dir.path());
  CHECK(r.status == 2);
  CHECK(r.err.find("--image: applies to Flux models") != std::string::npos);
}

TEST_CASE("a plan `ferry plan --json` wrote for a Flux file runs in `ferry flux-step --plan`") {
  FluxPlanFixture fx;
  // This machine's plan (all on the CPU without a GPU), for the steps flux-step will run.
  const Result r = fx.plan({"--json", "--image", "64x32", "--txt", "8"});
  const nlohmann::json written = parsed(r);
  const fs::path plan = fx.dir.path() / "plan.json";
  std::ofstream(plan) << r.out;
  const Result step = run_ferry({"flux-step", fx.model.string(), "--image", "64x32", "--txt-tokens", "8", "--steps",
                                 "1", "--plan", plan.string()},
                                fx.dir.path());
  INFO(step.err);
  CHECK(step.status == 0);
  CHECK(step.out.find("seconds per step") != std::string::npos);
  CHECK(step.out.find("--plan " + plan.string()) != std::string::npos);
  CHECK(written["layers"].size() == 6);

  // Edited into another model's plan (a layer renamed): refused naming the key.
  nlohmann::json edited = written;
  edited["layers"][2]["name"] = "double_blocks.7";
  std::ofstream(plan) << edited.dump();
  const Result refused = run_ferry({"flux-step", fx.model.string(), "--image", "64x32", "--txt-tokens", "8", "--steps",
                                    "1", "--plan", plan.string()},
                                   fx.dir.path());
  CHECK(refused.status == 1);
  CHECK(refused.err.find("layers[2].name") != std::string::npos);
}
