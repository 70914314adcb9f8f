// Manual overrides and plan files as the planners take them, on synthetic profiles and hand-written device profiles
// (so GPU plans are tested on machines without one): forced layers keep their placement under every policy and the
// policy's rule places the rest; auto with overrides is never predicted slower than a fixed policy with the same
// overrides; overrides and plan files that cannot be honoured are refused with the reason, the flag or JSON key, and
// the numbers.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/policies/cost_model.hpp"
#include "ferry/policies/planner.hpp"
#include "support/planner_inputs.hpp"
#include "support/rated_profiles.hpp"
#include "support/seed.hpp"

using namespace ferry;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

StackProfile stack_of(int n, int64_t rows, int64_t max_tokens) { return test::llama_like_stack(n, rows, max_tokens); }

using test::rated_gpu;  // support/rated_profiles.hpp

PlanRequest request(Policy policy, uint64_t budget, int64_t max_tokens, std::vector<PlacementOverride> overrides = {}) {
  return test::plan_request(policy, budget, max_tokens, std::move(overrides));
}

std::string error_of(const StackProfile& s, const DeviceProfile& d, const PlanRequest& r, ErrorCategory category) {
  try {
    (void)make_plan(s, d, r);
  } catch (const Error& e) {
    CHECK(e.category() == category);
    return e.what();
  }
  FAIL("the plan was accepted");
  return "";
}

// The device memory `placements` need, as the planners count it.
uint64_t needs(const StackProfile& s, const DeviceProfile& d, const std::vector<Placement>& placements) {
  return compute_memory_plan(
             memory_plan_input(s.layers, placements, request(Policy::AUTO, 0, s.max_tokens).options, d.context_bytes),
             0)
      .required_budget;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

constexpr Policy kPolicies[] = {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM, Policy::STREAM_ALL, Policy::CPU_ALL,
                                Policy::AUTO};

// A valid plan file's text for `placements` of stack_of's names.
std::string plan_json(const std::vector<std::string>& placements, const std::string& extra = "") {
  std::string s = "{" + extra + "\"layers\": [";
  for (size_t i = 0; i < placements.size(); ++i) {
    const std::string name = i + 1 < placements.size() ? "blk." + std::to_string(i) : "output";
    s += (i ? ", " : "") + std::string("{\"index\": ") + std::to_string(i) + ", \"name\": \"" + name +
         "\", \"placement\": \"" + placements[i] + "\"}";
  }
  return s + "]}";
}

}  // namespace

TEST_CASE("overrides: forced layers keep their placement under every policy; the policy's rule places the rest") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(8, 8192, 64);  // 35.7 MB per layer
  const std::vector<PlacementOverride> overrides = {{"--cpu", "blk\\.(0|1)", Placement::CPU},
                                                    {"--stream", "blk\\.5", Placement::STREAMED},
                                                    {"--resident", "output", Placement::RESIDENT}};
  for (Policy policy : kPolicies) {
    CAPTURE(policy_name(policy));
    const Plan p = make_plan(s, d, request(policy, 2 * kGiB, 64, overrides));
    REQUIRE(p.placements.size() == 9);
    CHECK(p.placements[0] == Placement::CPU);
    CHECK(p.placements[1] == Placement::CPU);
    CHECK(p.placements[5] == Placement::STREAMED);
    CHECK(p.placements[8] == Placement::RESIDENT);
    CHECK(p.memory.required_budget <= 2 * kGiB);
    // 2 GiB holds every layer: resident-first and resident-stream keep all the free ones resident, stream-all
    // streams them, cpu-all runs them on the CPU.
    for (size_t i : {2, 3, 4, 6, 7}) {
      CAPTURE(i);
      if (policy == Policy::RESIDENT_FIRST || policy == Policy::RESIDENT_STREAM)
        CHECK(p.placements[i] == Placement::RESIDENT);
      if (policy == Policy::STREAM_ALL) CHECK(p.placements[i] == Placement::STREAMED);
      if (policy == Policy::CPU_ALL) CHECK(p.placements[i] == Placement::CPU);
    }
  }
  // A tight budget: resident-first puts the free layers that do not fit on the CPU, resident-stream streams them;
  // both keep a prefix of the free layers resident.
  // What layers 1-3 resident and the rest streamed need: the fixed costs, three layers and the staging slots.
  const uint64_t tight =
      needs(s, d,
            {Placement::CPU, Placement::RESIDENT, Placement::RESIDENT, Placement::RESIDENT, Placement::STREAMED,
             Placement::STREAMED, Placement::STREAMED, Placement::STREAMED, Placement::STREAMED});
  for (Policy policy : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM}) {
    CAPTURE(policy_name(policy));
    const Plan p = make_plan(s, d, request(policy, tight, 64, {{"--cpu", "blk\\.0", Placement::CPU}}));
    CHECK(p.placements[0] == Placement::CPU);
    CHECK(p.memory.required_budget <= tight);
    const Placement rest = policy == Policy::RESIDENT_FIRST ? Placement::CPU : Placement::STREAMED;
    size_t k = 1;
    while (k < p.placements.size() && p.placements[k] == Placement::RESIDENT) ++k;
    CHECK(k > 1);
    CHECK(k < p.placements.size());
    for (size_t i = k; i < p.placements.size(); ++i) CHECK(p.placements[i] == rest);
  }
}

TEST_CASE("overrides: --phased layers stay phased under every policy; without a GPU they are refused") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(8, 8192, 64);
  const std::vector<PlacementOverride> overrides = {{"--phased", "blk\\.(2|5)", Placement::PHASED},
                                                    {"--cpu", "blk\\.0", Placement::CPU}};
  for (Policy policy : kPolicies) {
    CAPTURE(policy_name(policy));
    for (uint64_t budget : {2 * kGiB, needs(s, d, std::vector<Placement>(9, Placement::STREAMED))}) {
      CAPTURE(budget);
      const Plan p = make_plan(s, d, request(policy, budget, 64, overrides));
      CHECK(p.placements[2] == Placement::PHASED);
      CHECK(p.placements[5] == Placement::PHASED);
      CHECK(p.placements[0] == Placement::CPU);
      // The fixed policies place no phased layer of their own; auto may place more.
      const auto phased = std::count(p.placements.begin(), p.placements.end(), Placement::PHASED);
      if (policy == Policy::AUTO)
        CHECK(phased >= 2);
      else
        CHECK(phased == 2);
      CHECK(p.memory.required_budget <= budget);
      CHECK(contains(p.summary(), std::to_string(phased) + " phased"));
    }
  }
  // Phased layers stream in a prompt: they need a GPU.
  const std::string e =
      error_of(s, DeviceProfile{}, request(Policy::AUTO, 2 * kGiB, 64, overrides), ErrorCategory::UNSUPPORTED);
  CHECK_MESSAGE(contains(e, "--phased 'blk\\.(2|5)'"), e);
  CHECK_MESSAGE(contains(e, "layer 'blk.2' is forced phased, but there is no GPU"), e);
}

TEST_CASE("plan files: phased placements and the threshold run as written") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(4, 8192, 64);
  const PlanFile file = parse_plan_file(
      plan_json({"resident", "phased", "streamed", "Phased", "cpu"}, "\"phased_cpu_max_tokens\": 17, "), "p.json");
  CHECK(file.phased_cpu_max_tokens == 17);
  PlanRequest r = request(Policy::AUTO, needs(s, d, file.placements), 64);
  r.plan_file = file;
  const Plan p = make_plan(s, d, r);
  CHECK(p.placements == std::vector<Placement>{Placement::RESIDENT, Placement::PHASED, Placement::STREAMED,
                                               Placement::PHASED, Placement::CPU});
  CHECK(p.phased_cpu_max_tokens == 17);
  // Without the key, the request's threshold.
  r.plan_file = parse_plan_file(plan_json({"resident", "phased", "streamed", "phased", "cpu"}), "q.json");
  r.options.phased_cpu_max_tokens = 3;
  CHECK(make_plan(s, d, r).phased_cpu_max_tokens == 3);
}

TEST_CASE("overrides: auto is never predicted slower than a fixed policy with the same overrides") {
  const DeviceProfile d = rated_gpu();
  std::mt19937_64 rng(test::test_seed(1313));
  const Placement kinds[] = {Placement::RESIDENT, Placement::STREAMED, Placement::CPU};
  const char* flags[] = {"--resident", "--stream", "--cpu"};
  int compared = 0;
  for (int trial = 0; trial < 30; ++trial) {
    CAPTURE(trial);
    const int n = 3 + static_cast<int>(rng() % 8);
    const StackProfile s = stack_of(n, 2048 + static_cast<int64_t>(rng() % 16) * 1024, 64);
    const size_t kind = rng() % 3;
    const std::vector<PlacementOverride> o = {{flags[kind], "blk\\." + std::to_string(rng() % n), kinds[kind]}};
    // Around what streaming everything needs: from a budget where little fits to one where everything does.
    const uint64_t streamed = needs(s, d, std::vector<Placement>(s.layers.size(), Placement::STREAMED));
    PlanRequest r = request(Policy::AUTO, streamed - 64 * kMiB + rng() % (512 * kMiB), 64, o);
    r.prompt_tokens = 1 + static_cast<int64_t>(rng() % 1024);
    r.generated_tokens = static_cast<int64_t>(rng() % 256);
    CAPTURE(o[0].flag);
    CAPTURE(o[0].pattern);
    Plan a;
    try {
      a = make_plan(s, d, r);
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::BUDGET);  // a forced layer that cannot fit: no policy can honour it
      continue;
    }
    CHECK(a.memory.required_budget <= r.vram_budget);
    const double auto_s =
        predict_run(s, a.placements, d, r.prompt_tokens, r.generated_tokens, ScheduleShape{1, a.phased_cpu_max_tokens})
            .total_s;
    for (Policy fixed : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM, Policy::STREAM_ALL, Policy::CPU_ALL}) {
      CAPTURE(policy_name(fixed));
      r.policy = fixed;
      Plan p;
      try {
        p = make_plan(s, d, r);
      } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::BUDGET);
        continue;
      }
      CHECK(p.placements[std::stoul(o[0].pattern.substr(5))] == kinds[kind]);
      CHECK(auto_s <= predict_run(s, p.placements, d, r.prompt_tokens, r.generated_tokens,
                                  ScheduleShape{1, p.phased_cpu_max_tokens})
                              .total_s *
                          (1 + 1e-12));
      ++compared;
    }
  }
  CHECK(compared >= 60);  // most trials fit: the comparison is not vacuous
}

TEST_CASE("overrides that cannot be honoured are refused with the flag, the reason and the numbers") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(8, 8192, 64);
  // A bad pattern, one that matches nothing, two placements for one layer: the flags are wrong (INVALID_ARGUMENT).
  std::string e = error_of(s, d, request(Policy::AUTO, 2 * kGiB, 64, {{"--resident", "blk\\.(", Placement::RESIDENT}}),
                           ErrorCategory::INVALID_ARGUMENT);
  CHECK_MESSAGE(contains(e, "--resident: 'blk\\.(' is not a valid regular expression"), e);
  e = error_of(s, d, request(Policy::AUTO, 2 * kGiB, 64, {{"--cpu", "blk\\.1[0-9]", Placement::CPU}}),
               ErrorCategory::INVALID_ARGUMENT);
  CHECK_MESSAGE(contains(e, "--cpu: 'blk\\.1[0-9]' matches no layer"), e);
  CHECK_MESSAGE(contains(e, "blk.0"), e);  // the names it could have matched
  CHECK_MESSAGE(contains(e, "output"), e);
  e = error_of(s, d,
               request(Policy::AUTO, 2 * kGiB, 64,
                       {{"--cpu", "blk\\.[0-3]", Placement::CPU}, {"--stream", "blk\\.3", Placement::STREAMED}}),
               ErrorCategory::INVALID_ARGUMENT);
  CHECK_MESSAGE(contains(e, "layer 'blk.3' is forced cpu by --cpu"), e);
  // The same layer twice with the same placement is not a conflict.
  CHECK_NOTHROW(make_plan(s, d,
                          request(Policy::AUTO, 2 * kGiB, 64,
                                  {{"--cpu", "blk\\.[0-3]", Placement::CPU}, {"--cpu", "blk\\.3", Placement::CPU}})));
  // Every block forced resident under a budget that holds three of them: refused (BUDGET) by every policy, with the
  // bytes needed and the budget.
  std::vector<Placement> three(9, Placement::CPU);
  three[0] = three[1] = three[2] = Placement::RESIDENT;
  const uint64_t budget = needs(s, d, three);
  for (Policy policy : kPolicies) {
    CAPTURE(policy_name(policy));
    e = error_of(s, d, request(policy, budget, 64, {{"--resident", "blk\\..*", Placement::RESIDENT}}),
                 ErrorCategory::BUDGET);
    CHECK_MESSAGE(contains(e, "--resident 'blk\\..*' cannot be honoured"), e);
    CHECK_MESSAGE(contains(e, "but the budget is " + format_size(budget)), e);
    CHECK_MESSAGE(contains(e, "bytes over"), e);
  }
  // A GPU placement without a GPU, or with a budget of 0.
  e = error_of(s, DeviceProfile{}, request(Policy::AUTO, 2 * kGiB, 64, {{"--stream", "blk\\.2", Placement::STREAMED}}),
               ErrorCategory::UNSUPPORTED);
  CHECK_MESSAGE(contains(e, "layer 'blk.2' is forced streamed, but there is no GPU"), e);
  e = error_of(s, d, request(Policy::AUTO, 0, 64, {{"--resident", "output", Placement::RESIDENT}}),
               ErrorCategory::UNSUPPORTED);
  CHECK_MESSAGE(contains(e, "the VRAM budget is 0"), e);
  // Forcing the CPU needs no GPU.
  const Plan cpu =
      make_plan(s, DeviceProfile{}, request(Policy::AUTO, 2 * kGiB, 64, {{"--cpu", "blk\\.2", Placement::CPU}}));
  for (Placement p : cpu.placements) CHECK(p == Placement::CPU);
}

TEST_CASE("plan files: the placements run as written, edited or not, checked against the model and the budget") {
  const DeviceProfile d = rated_gpu();
  const StackProfile s = stack_of(4, 8192, 64);
  // As `ferry plan --json` writes them (extra keys ignored), then edited by hand: one layer moved to the CPU, one
  // streamed.
  const PlanFile file =
      parse_plan_file(plan_json({"resident", "cpu", "streamed", "resident", "Resident"},
                                "\"policy\": \"auto\", \"budget_bytes\": 1073741824, \"predicted\": "
                                "{\"prompt_tokens_per_s\": 812.5, \"generate_tokens_per_s\": 41, \"total_s\": 1}, "),
                      "edited.json");
  CHECK(file.budget_bytes == 1 * kGiB);
  CHECK(file.predicted_prompt_tokens_per_s == 812.5);
  CHECK(file.predicted_generate_tokens_per_s == 41.0);
  for (Policy policy : kPolicies) {  // the policy does not matter: the file decides
    PlanRequest r = request(policy, needs(s, d, file.placements), 64);
    r.plan_file = file;
    const Plan p = make_plan(s, d, r);
    CHECK(p.placements == std::vector<Placement>{Placement::RESIDENT, Placement::CPU, Placement::STREAMED,
                                                 Placement::RESIDENT, Placement::RESIDENT});
    CHECK(contains(p.note, "edited.json"));
  }
  // The budget: what it needs and what there is.
  const uint64_t fits = needs(s, d, file.placements);
  PlanRequest small = request(Policy::AUTO, fits - 1, 64);
  small.plan_file = file;
  std::string e = error_of(s, d, small, ErrorCategory::BUDGET);
  CHECK_MESSAGE(contains(e, "plan file edited.json needs"), e);
  CHECK_MESSAGE(contains(e, "needs " + format_size(fits) + " of device memory, but the budget is " +
                                format_size(fits - 1) + " (1 bytes over)"),
                e);
  // The device: no GPU, so only cpu placements; the first layer that is not is named by its key.
  PlanRequest none = request(Policy::AUTO, 1 * kGiB, 64);
  none.plan_file = file;
  e = error_of(s, DeviceProfile{}, none, ErrorCategory::UNSUPPORTED);
  CHECK_MESSAGE(contains(e, "layers[0].placement is resident ('blk.0'), but there is no GPU"), e);
  // The model: another layer count, another name.
  PlanRequest other = request(Policy::AUTO, 1 * kGiB, 64);
  other.plan_file = parse_plan_file(plan_json({"cpu", "cpu", "cpu", "cpu"}), "three.json");
  e = error_of(s, d, other, ErrorCategory::FORMAT);
  CHECK_MESSAGE(contains(e, "plan file three.json: layers: 4 entries, but the model has 5 layers (blk.0 .. output)"),
                e);
  std::string renamed = plan_json({"cpu", "cpu", "cpu", "cpu", "cpu"});
  renamed.replace(renamed.find("blk.2"), 5, "blk.9");
  other.plan_file = parse_plan_file(renamed, "renamed.json");
  e = error_of(s, d, other, ErrorCategory::FORMAT);
  CHECK_MESSAGE(contains(e, "layers[2].name: 'blk.9' is not the model's layer 2 'blk.2'"), e);
}

TEST_CASE("plan files: malformed ones are refused naming the key") {
  struct Case {
    std::string text, expected;
  };
  const std::string ok = plan_json({"cpu", "resident"});
  std::string no_index = ok;
  const Case cases[] = {
      {"{\"layers\": [", "not valid JSON"},
      {"[1, 2]", "(top level): expected an object"},
      {"{\"policy\": \"auto\"}", "layers: missing"},
      {"{\"layers\": []}", "layers: expected a non-empty array"},
      {"{\"layers\": [7]}", "layers[0]: expected an object"},
      {"{\"layers\": [{\"placement\": \"cpu\"}]}", "layers[0].name: missing"},
      {"{\"layers\": [{\"name\": 3, \"placement\": \"cpu\"}]}", "layers[0].name: expected a string"},
      {"{\"layers\": [{\"name\": \"blk.0\"}]}", "layers[0].placement: missing"},
      {"{\"layers\": [{\"name\": \"blk.0\", \"placement\": \"cpu\"}, {\"name\": \"output\", \"placement\": \"gpu\"}]}",
       "layers[1].placement: 'gpu' is not a placement (resident, streamed, cpu or phased)"},
      {"{\"layers\": [{\"index\": 1, \"name\": \"blk.0\", \"placement\": \"cpu\"}]}",
       "layers[0].index: 1 is not the entry's position 0"},
      {"{\"budget_bytes\": -5, " + ok.substr(1), "budget_bytes: expected a whole number of bytes, found -5"},
      {"{\"budget_bytes\": \"8GiB\", " + ok.substr(1), "budget_bytes: expected a whole number of bytes"},
      {"{\"predicted\": 3, " + ok.substr(1), "predicted: expected null or an object"},
      {"{\"phased_cpu_max_tokens\": -1, " + ok.substr(1),
       "phased_cpu_max_tokens: expected a whole number of tokens, found -1"},
      {"{\"phased_cpu_max_tokens\": \"8\", " + ok.substr(1), "phased_cpu_max_tokens: expected a whole number"},
      {"{\"predicted\": {\"generate_tokens_per_s\": \"fast\"}, " + ok.substr(1),
       "predicted.generate_tokens_per_s: expected a rate"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    try {
      (void)parse_plan_file(c.text, "bad.json");
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::FORMAT);
      CHECK_MESSAGE(contains(e.what(), "plan file bad.json: "), e.what());
      CHECK_MESSAGE(contains(e.what(), c.expected), e.what());
    }
  }
  CHECK_NOTHROW(parse_plan_file(ok, "ok.json"));
  CHECK(parse_plan_file("{\"predicted\": null, " + ok.substr(1), "ok.json").predicted_prompt_tokens_per_s ==
        std::nullopt);
}
