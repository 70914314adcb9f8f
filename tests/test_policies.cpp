// The policy module as a pure function: a stack's profile read from a model file's header (no weight read, no GPU
// touched), device profiles given by hand (so GPU plans are tested on machines without one), and the planners'
// placements against the rules each policy states and the budget every plan must respect.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/gguf.hpp"
#include "ferry/models/llama/profile.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/models/model_presets.hpp"
#include "ferry/offload/size_parse.hpp"
#include "ferry/policies/planner.hpp"
#include "support/planner_inputs.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"

using namespace ferry;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kGiB = uint64_t{1} << 30;

std::filesystem::path make_model(const std::filesystem::path& dir, const char* preset, ModelFileType type) {
  const auto path = dir / (std::string(preset) + ".gguf");
  write_llama_model(llama_preset(preset), MakeModelOptions{type, test::test_seed(5), 32, ""}, path);
  return path;
}

// The same file cut right after its header: every tensor's data is missing.
std::filesystem::path header_only_copy(const std::filesystem::path& model, const std::filesystem::path& dir) {
  uint64_t data_offset = 0;
  {
    const GgufFile full = GgufFile::open(model);
    data_offset = full.data_offset();
  }
  const auto cut = dir / "header-only.gguf";
  std::filesystem::copy_file(model, cut);
  std::filesystem::resize_file(cut, data_offset);
  return cut;
}

void check_same(const StackProfile& a, const StackProfile& b) {
  REQUIRE(a.layers.size() == b.layers.size());
  CHECK(a.max_tokens == b.max_tokens);
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerDemand &x = a.layers[i], &y = b.layers[i];
    CAPTURE(x.name);
    CHECK(x.name == y.name);
    CHECK(x.width == y.width);
    CHECK(x.weight_bytes == y.weight_bytes);
    CHECK(x.kv_cache_bytes == y.kv_cache_bytes);
    CHECK(x.workspace_floats_cpu == y.workspace_floats_cpu);
    CHECK(x.workspace_floats_gpu == y.workspace_floats_gpu);
    CHECK(x.output_floats == y.output_floats);
    REQUIRE(x.matmuls.size() == y.matmuls.size());
    for (size_t m = 0; m < x.matmuls.size(); ++m) {
      CHECK(x.matmuls[m].type == y.matmuls[m].type);
      CHECK(x.matmuls[m].n_rows == y.matmuls[m].n_rows);
      CHECK(x.matmuls[m].n_cols == y.matmuls[m].n_cols);
    }
  }
}

// A stack of n equal layers as a planner sees it (widths of a 13B model, Q4_0-sized weights).
StackProfile synthetic_profile(int n, uint64_t layer_bytes, int64_t max_tokens) {
  StackProfile p;
  p.model = "synthetic";
  p.max_tokens = max_tokens;
  for (int i = 0; i < n; ++i) {
    LayerDemand d;
    d.name = "blk." + std::to_string(i);
    d.width = 5120;
    d.weight_bytes = layer_bytes;
    d.kv_cache_bytes = 4 * kMiB;
    d.workspace_floats_cpu = d.workspace_floats_gpu = static_cast<size_t>(max_tokens) * 40000;
    d.matmuls.push_back(QuantMatrixView{GgmlType::Q4_0, nullptr, 5120, 13824});
    p.layers.push_back(d);
  }
  return p;
}

PlanRequest request(Policy policy, uint64_t budget, int64_t max_tokens) {
  return test::plan_request(policy, budget, max_tokens);
}

const DeviceProfile kGpu{"a test GPU", true, 600 * kMiB};

}  // namespace

TEST_CASE("a llama stack profile comes from the file's header alone: no weight read, no GPU") {
  test::TempDir dir;
  const auto model = make_model(dir.path(), "tiny", ModelFileType::Q4_K_M);
  const auto cut = header_only_copy(model, dir.path());
  // The data is gone: a full open refuses the file, the header read does not need it.
  CHECK_THROWS_AS(GgufFile::open(cut), Error);
  const GgufFile header = GgufFile::open_header(cut);
  CHECK_FALSE(header.has_data());
  CHECK_THROWS_AS(header.tensor_data(header.tensors().front()), Error);
  const GgufFile full = GgufFile::open(model);
  for (int64_t max_tokens : {1, 7, 512}) {
    CAPTURE(max_tokens);
    const StackProfile from_header = llama_stack_profile(header, 256, max_tokens);
    const StackProfile from_file = llama_stack_profile(full, 256, max_tokens);
    check_same(from_header, from_file);
    // tiny: 2 blocks and the head; the head multiplies the output projection, a block seven matrices.
    REQUIRE(from_header.layers.size() == 3);
    CHECK(from_header.layers[0].matmuls.size() == 7);
    CHECK(from_header.layers[2].matmuls.size() == 1);
    CHECK(from_header.layers[0].kv_cache_bytes == 2 * 256 * 128 * sizeof(uint16_t));
    CHECK(from_header.layers[0].workspace_floats_gpu > from_header.layers[0].workspace_floats_cpu);
    CHECK(from_header.max_tokens == std::min<int64_t>(max_tokens, 256));
    // Every llama matrix multiplies every token of the step: the cost model prices it at the step's T.
    for (const LayerDemand& l : from_header.layers)
      CHECK(l.matmul_tokens == std::vector<int64_t>(l.matmuls.size(), from_header.max_tokens));
  }
}

TEST_CASE("open_header reads big headers in growing prefixes and reports a cut header like open does") {
  test::TempDir dir;
  // 'small' has a 4096-token vocabulary: its header is larger than a few pages, yet far under the first read.
  const auto model = make_model(dir.path(), "small", ModelFileType::Q8_0);
  const GgufFile header = GgufFile::open_header(model);
  const GgufFile full = GgufFile::open(model);
  CHECK(header.tensors().size() == full.tensors().size());
  CHECK(header.data_offset() == full.data_offset());
  // Cut inside the tensor table: both refuse it, naming the file.
  const auto cut = dir.path() / "cut.gguf";
  std::filesystem::copy_file(model, cut);
  std::filesystem::resize_file(cut, full.data_offset() - 40);
  try {
    (void)GgufFile::open_header(cut);
    FAIL("a header cut short was accepted");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::FORMAT);
    CHECK(std::string(e.what()).find(cut.string()) != std::string::npos);
  }
  CHECK_THROWS_AS(GgufFile::open_header(dir.path() / "missing.gguf"), Error);
}

TEST_CASE("planners: every policy's rule, and no plan above its budget") {
  const int64_t T = 32;
  const StackProfile stack = synthetic_profile(40, 180 * kMiB, T);
  for (uint64_t budget : {2 * kGiB, 4 * kGiB, 7 * kGiB, 8 * kGiB, 16 * kGiB}) {
    CAPTURE(format_size(budget));
    const Plan first = make_plan(stack, kGpu, request(Policy::RESIDENT_FIRST, budget, T));
    const Plan stream = make_plan(stack, kGpu, request(Policy::RESIDENT_STREAM, budget, T));
    const Plan all = make_plan(stack, kGpu, request(Policy::STREAM_ALL, budget, T));
    for (const Plan* p : {&first, &stream, &all}) {
      CHECK(p->placements.size() == stack.layers.size());
      CHECK(p->memory.uses_device);
      CHECK(p->memory.required_budget <= budget);
    }
    // resident-first: a prefix resident, the rest on the CPU; one more resident layer would not fit.
    size_t resident = 0;
    while (resident < first.placements.size() && first.placements[resident] == Placement::RESIDENT) ++resident;
    for (size_t i = resident; i < first.placements.size(); ++i) CHECK(first.placements[i] == Placement::CPU);
    if (resident < first.placements.size()) {
      std::vector<Placement> more = first.placements;
      more[resident] = Placement::RESIDENT;
      CHECK(
          compute_memory_plan(memory_plan_input(stack.layers, more, request(Policy::RESIDENT_FIRST, budget, T).options,
                                                kGpu.context_bytes),
                              budget)
              .required_budget > budget);
    }
    // resident-stream: a prefix resident, the rest streamed; stream-all: everything streamed.
    bool streaming = false;
    for (Placement p : stream.placements) {
      CHECK(p != Placement::CPU);
      if (p == Placement::STREAMED) streaming = true;
      if (streaming) CHECK(p == Placement::STREAMED);
    }
    for (Placement p : all.placements) CHECK(p == Placement::STREAMED);
    // Staging slots cost what resident-first does not pay: it keeps at least as many layers resident.
    size_t stream_resident = 0;
    for (Placement p : stream.placements) stream_resident += p == Placement::RESIDENT;
    CHECK(resident >= stream_resident);
    if (budget == 16 * kGiB) {  // 7 GiB of weights fit: both keep every layer resident
      CHECK(resident == stack.layers.size());
      CHECK(stream_resident == stack.layers.size());
    }
    if (budget == 4 * kGiB) CHECK((stream_resident > 0 && stream_resident < stack.layers.size()));
  }
}

TEST_CASE("planners: no GPU, no budget or cpu-all put everything on the CPU; too small a budget is refused") {
  const StackProfile stack = synthetic_profile(6, 180 * kMiB, 8);
  const DeviceProfile none;
  for (const Plan& p : {make_plan(stack, none, request(Policy::RESIDENT_STREAM, 8 * kGiB, 8)),
                        make_plan(stack, kGpu, request(Policy::RESIDENT_FIRST, 0, 8)),
                        make_plan(stack, kGpu, request(Policy::CPU_ALL, 8 * kGiB, 8))}) {
    CHECK(p.policy == Policy::CPU_ALL);
    CHECK_FALSE(p.memory.uses_device);
    for (Placement x : p.placements) CHECK(x == Placement::CPU);
    CHECK(p.host.kv_cache == 6 * 4 * kMiB);
  }
  for (Policy policy : {Policy::STREAM_ALL, Policy::RESIDENT_STREAM}) {
    try {
      (void)make_plan(stack, kGpu, request(policy, 700 * kMiB, 8));
      FAIL("a budget below the context overhead was accepted");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::BUDGET);
      CHECK(std::string(e.what()).find("minimum") != std::string::npos);
    }
  }
  // resident-first never refuses: what does not fit runs on the CPU.
  const Plan tight = make_plan(stack, kGpu, request(Policy::RESIDENT_FIRST, 700 * kMiB, 8));
  for (Placement x : tight.placements) CHECK(x == Placement::CPU);
  CHECK_THROWS_AS(make_plan(stack, kGpu, request(Policy::RESIDENT_FIRST, 8 * kGiB, 16)), Error);  // wrong step size
}

TEST_CASE("policy names round-trip; unknown ones are refused listing the choices") {
  for (Policy p : {Policy::RESIDENT_FIRST, Policy::RESIDENT_STREAM, Policy::STREAM_ALL, Policy::CPU_ALL})
    CHECK(parse_policy(policy_name(p)) == p);
  try {
    (void)parse_policy("fastest");
    FAIL("unknown policy accepted");
  } catch (const Error& e) {
    CHECK(e.category() == ErrorCategory::INVALID_ARGUMENT);
    CHECK(std::string(e.what()).find("resident-stream") != std::string::npos);
  }
}

TEST_CASE("a device profile round-trips through JSON; malformed ones are refused by field") {
  const DeviceProfile p{"NVIDIA H200", true, 594 * kMiB + 12345};
  const DeviceProfile q = DeviceProfile::from_json(p.to_json());
  CHECK(q.name == p.name);
  CHECK(q.has_gpu == p.has_gpu);
  CHECK(q.context_bytes == p.context_bytes);
  for (const char* bad :
       {"", "{", "[]", R"({"name": "x", "has_gpu": true})", R"({"name": "x", "has_gpu": "yes", "context_bytes": 1})",
        R"({"name": 3, "has_gpu": true, "context_bytes": 1})"}) {
    CAPTURE(bad);
    try {
      (void)DeviceProfile::from_json(bad);
      FAIL("accepted");
    } catch (const Error& e) {
      CHECK(e.category() == ErrorCategory::FORMAT);
    }
  }
}
