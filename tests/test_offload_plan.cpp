// The offload engine's pure arithmetic: budget parsing, the memory plan of design.md §3, the arena's bookkeeping and
// the layer layout. No GPU needed.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "ferry/error.hpp"
#include "ferry/kernels/device_sizing.hpp"
#include "ferry/offload/arena_allocator.hpp"
#include "ferry/offload/demand.hpp"
#include "ferry/offload/layer.hpp"
#include "ferry/offload/memory_plan.hpp"
#include "ferry/offload/placement.hpp"
#include "ferry/offload/size_parse.hpp"
#include "support/errors.hpp"
#include "support/seed.hpp"
#include "support/text.hpp"

using namespace ferry;

namespace {

using test::contains;
using test::error_of;

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;

MemoryPlanInput example_input() {
  MemoryPlanInput in;
  in.context_bytes = 500 * kMiB + 123;
  in.layers = {{80 * kMiB, 0, Placement::RESIDENT},
               {70 * kMiB + 1000, 4 * kMiB, Placement::STREAMED},
               {90 * kMiB, 0, Placement::CPU},  // the largest layer, but on the CPU: no staging for it
               {60 * kMiB, 2 * kMiB, Placement::STREAMED},
               {75 * kMiB, 0, Placement::RESIDENT}};
  in.staging_slots = 3;
  in.fp16_scratch_bytes = 64 * kMiB;
  in.activation_bytes = 12 * kMiB + 7;
  in.cublas_workspace_bytes = 32 * kMiB;
  return in;
}

}  // namespace

TEST_CASE("budget sizes parse with binary and decimal units") {
  CHECK(parse_size("8GiB") == 8 * kGiB);
  CHECK(parse_size("7.5G") == 7'500'000'000ull);
  CHECK(parse_size("512MiB") == 512 * kMiB);
  CHECK(parse_size("1.5GB") == 1'500'000'000ull);
  CHECK(parse_size("1.5GiB") == 3 * kGiB / 2);
  CHECK(parse_size("0.25KiB") == 256);
  CHECK(parse_size("4096") == 4096);
  CHECK(parse_size("4096B") == 4096);
  CHECK(parse_size("3k") == 3000);
  CHECK(parse_size("2 mib") == 2 * kMiB);
  CHECK(parse_size("  1TiB ") == 1024 * kGiB);
  CHECK(parse_size("2T") == 2'000'000'000'000ull);
  CHECK(parse_size(".5M") == 500'000);
  CHECK(parse_size("3.") == 3);
  CHECK(parse_size("1.0000005K") == 1000);                       // 1000.0005 bytes: rounds to the nearest byte
  CHECK(parse_size("1.0005K") == 1001);                          // 1000.5 bytes: halves round up
  CHECK(parse_size("17179869183GiB") == 17179869183ull * kGiB);  // 2^64 - 2^30: the largest whole GiB count
  CHECK(parse_budget("1MiB") == kMiB);
  // Scientific notation, exact: 1e9 is ten to the ninth bytes, 2.5e-3G is 2.5 MB.
  CHECK(parse_size("1e9") == 1'000'000'000ull);
  CHECK(parse_size("8E3MiB") == 8000 * kMiB);
  CHECK(parse_size("2.5e-3G") == 2'500'000ull);
  CHECK(parse_size("1.1234567890123456789G") == 1'123'456'789ull);
  CHECK(parse_size("18446744073709551615") == UINT64_MAX);
}

TEST_CASE("sizes beyond 64 bits are refused as too large, whatever their notation") {
  for (const char* big :
       {"1e30", "1e30GiB", "20000000000GiB", "99999999999999999999999", "18446744073709551616", "1.8447e19"}) {
    CAPTURE(big);
    const std::string message = error_of([&] { parse_size(big); }, ErrorCategory::INVALID_ARGUMENT);
    CHECK(contains(message, "too large"));
  }
}

TEST_CASE("garbage sizes are refused with a message that shows the accepted forms") {
  for (const char* bad : {"", "   ", "GiB", "8XB", "-1G", "+1G", "1.2.3G", "8 Gi", "1e", "1e+", "nan", "0x10", "8GiBs",
                          "1,5G", "1.5B", "0.5", "8 G B", "1.5e-1", "1e-3B"}) {
    CAPTURE(bad);
    const std::string message = error_of([&] { parse_size(bad); }, ErrorCategory::INVALID_ARGUMENT);
    CHECK(contains(message, std::string("'") + bad + "'"));
    CHECK(contains(message, "GiB"));
  }
  CHECK(contains(error_of([] { parse_budget("0GiB"); }, ErrorCategory::INVALID_ARGUMENT), "zero"));
}

TEST_CASE("sizes format in binary units") {
  CHECK(format_size(0) == "0 B");
  CHECK(format_size(1023) == "1023 B");
  CHECK(format_size(1536) == "1.50 KiB");
  CHECK(format_size(8 * kGiB) == "8.00 GiB");
  CHECK(format_size(7 * kGiB + kGiB / 4) == "7.25 GiB");
}

TEST_CASE("placement names round-trip") {
  for (Placement p : {Placement::RESIDENT, Placement::STREAMED, Placement::CPU, Placement::PHASED})
    CHECK(parse_placement(placement_name(p)) == p);
  CHECK(parse_placement("Streamed") == Placement::STREAMED);
  CHECK_FALSE(parse_placement("gpu").has_value());
}

TEST_CASE("the memory plan follows the formula of design.md section 3") {
  const MemoryPlanInput in = example_input();
  const uint64_t budget = 2 * kGiB;
  const MemoryPlan plan = plan_memory(in, budget);
  CHECK(plan.uses_device);
  CHECK(plan[MemoryCategory::CONTEXT] == in.context_bytes);
  CHECK(plan[MemoryCategory::RESIDENT_WEIGHTS] == 80 * kMiB + 75 * kMiB);
  // S x the largest STREAMED layer, aligned (70 MiB + 1000 rounds up to a multiple of 256).
  CHECK(plan[MemoryCategory::STAGING] == 3 * align_up(70 * kMiB + 1000));
  CHECK(plan[MemoryCategory::FP16_SCRATCH] == 64 * kMiB);
  CHECK(plan[MemoryCategory::ACTIVATIONS] == align_up(12 * kMiB + 7));
  CHECK(plan[MemoryCategory::KV_CACHE] == 6 * kMiB);  // GPU layers only (the CPU layer has none here anyway)
  CHECK(plan[MemoryCategory::CUBLAS_WORKSPACE] == 32 * kMiB);
  // The default margin: 128 MiB whatever the budget (no proportional part).
  CHECK(plan[MemoryCategory::MARGIN] == 128 * kMiB);
  CHECK(plan.arena_bytes() == plan.total() - plan[MemoryCategory::CONTEXT] - plan[MemoryCategory::MARGIN]);
  CHECK(plan.total() <= budget);
  CHECK(plan.budget == budget);
  const uint64_t fixed = plan.total() - plan[MemoryCategory::MARGIN];
  CHECK(plan.required_budget == fixed + 128 * kMiB);
  // The minimum streams both resident layers too: S x the largest GPU layer (80 MiB), nothing resident.
  const uint64_t fixed_min = fixed - (80 + 75) * kMiB - plan[MemoryCategory::STAGING] + 3 * 80 * kMiB;
  CHECK(plan.minimum_budget == fixed_min + 128 * kMiB);
  for (const char* name : {"context", "resident weights", "staging slots", "fp16 scratch", "activations", "kv cache",
                           "cublas workspace", "margin", "minimum"})
    CHECK(contains(plan.breakdown(), name));
}

TEST_CASE("a proportional margin max(5%, 256 MiB) is 5% of the budget above 5 GiB") {
  MemoryPlanInput in = example_input();
  in.margin = MarginPolicy{0.05, 256 * kMiB};
  const uint64_t budget = 16 * kGiB;
  const MemoryPlan plan = plan_memory(in, budget);
  CHECK(plan[MemoryCategory::MARGIN] == (budget * 5 + 99) / 100);
  // A large fixed part: the smallest budget is fixed / 0.95, not fixed + 256 MiB.
  in.layers[0].weight_bytes = 12 * kGiB;
  const MemoryPlan big = compute_memory_plan(in, 0);
  const uint64_t fixed = big.total();  // margin is the floor at budget 0; take it out
  const uint64_t rest = fixed - big[MemoryCategory::MARGIN];
  CHECK(big.required_budget >= rest + margin_at(big.required_budget, in.margin));
  CHECK(big.required_budget - 1 < rest + margin_at(big.required_budget - 1, in.margin));
  CHECK(big.required_budget > rest + 256 * kMiB);
}

TEST_CASE("the required and minimum budgets are exact thresholds") {
  std::mt19937_64 rng(test::test_seed(20261126));
  for (int trial = 0; trial < 200; ++trial) {
    MemoryPlanInput in;
    in.context_bytes = rng() % (600 * kMiB);
    in.staging_slots = 2 + static_cast<int>(rng() % 4);
    in.fp16_scratch_bytes = rng() % (128 * kMiB);
    in.activation_bytes = rng() % (64 * kMiB);
    in.cublas_workspace_bytes = rng() % (32 * kMiB);
    in.margin.fraction = static_cast<double>(rng() % 20) / 100.0;
    in.margin.floor_bytes = rng() % (512 * kMiB);
    const int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i)
      in.layers.push_back({rng() % (2 * kGiB), rng() % (64 * kMiB), static_cast<Placement>(rng() % 3)});
    in.layers[rng() % in.layers.size()].placement = Placement::RESIDENT;  // at least one GPU layer
    CAPTURE(trial);
    const MemoryPlan plan = compute_memory_plan(in, 0);
    REQUIRE(plan.uses_device);
    CHECK(plan.minimum_budget <= plan.required_budget);
    CHECK_NOTHROW(plan_memory(in, plan.required_budget));
    const std::string message = error_of([&] { plan_memory(in, plan.required_budget - 1); }, ErrorCategory::BUDGET);
    CHECK(contains(message, std::to_string(plan.minimum_budget)));
    if (plan.minimum_budget > 0) {
      const std::string below = error_of([&] { plan_memory(in, plan.minimum_budget - 1); }, ErrorCategory::BUDGET);
      CHECK(contains(below, "below the minimum"));
      CHECK(contains(below, std::to_string(plan.minimum_budget)));
    }
    // The plan at the required budget holds everything with the margin the policy asks for at that budget.
    const MemoryPlan at = plan_memory(in, plan.required_budget);
    CHECK(at.total() <= at.budget);
    CHECK(at[MemoryCategory::MARGIN] == margin_at(at.budget, in.margin));
  }
}

TEST_CASE("a budget below the minimum is refused naming the minimum and the breakdown") {
  const MemoryPlanInput in = example_input();
  const MemoryPlan plan = compute_memory_plan(in, 0);
  const std::string message = error_of([&] { plan_memory(in, 512 * kMiB); }, ErrorCategory::BUDGET);
  CHECK(contains(message, "minimum"));
  CHECK(contains(message, format_size(plan.minimum_budget)));
  CHECK(contains(message, "staging slots"));
  CHECK(contains(message, "3 staging slots"));
}

TEST_CASE("phased layers take staging slots like streamed ones and one device KV buffer, the largest") {
  MemoryPlanInput in = example_input();
  const MemoryPlan before = plan_memory(in, 2 * kGiB);
  in.layers[1].placement = Placement::PHASED;  // 70 MiB + 1000, 4 MiB of KV cache
  in.layers[3].placement = Placement::PHASED;  // 60 MiB, 2 MiB of KV cache
  const MemoryPlan plan = plan_memory(in, 2 * kGiB);
  CHECK(plan[MemoryCategory::STAGING] == 3 * align_up(70 * kMiB + 1000));  // as when they were streamed
  CHECK(plan[MemoryCategory::STAGING] == before[MemoryCategory::STAGING]);
  CHECK(before[MemoryCategory::KV_CACHE] == 6 * kMiB);
  CHECK(plan[MemoryCategory::KV_CACHE] == 4 * kMiB);  // their caches live in host memory; one buffer, the largest
  CHECK(plan[MemoryCategory::RESIDENT_WEIGHTS] == before[MemoryCategory::RESIDENT_WEIGHTS]);
  // The largest layer phased: the slots grow to it, as for a streamed one.
  in.layers[2].placement = Placement::PHASED;
  CHECK(plan_memory(in, 2 * kGiB)[MemoryCategory::STAGING] == 3 * align_up(90 * kMiB));

  // Host memory: a phased layer's KV cache (it runs on the CPU in decode) and its weights in the pinned pool.
  std::vector<LayerDemand> layers(3);
  for (size_t i = 0; i < layers.size(); ++i) {
    layers[i].name = "blk." + std::to_string(i);
    layers[i].weight_bytes = (10 + 3 * i) * kMiB + 100;
    layers[i].kv_cache_bytes = (1 + i) * kMiB;
    layers[i].workspace_floats_cpu = 1000 * (i + 1);
    layers[i].output_floats = 64;
  }
  const StackOptions options;
  const auto need = [&](std::vector<Placement> p) { return host_memory_need(layers, p, options); };
  const HostMemoryNeed resident = need({Placement::RESIDENT, Placement::RESIDENT, Placement::RESIDENT});
  const HostMemoryNeed phased = need({Placement::RESIDENT, Placement::PHASED, Placement::RESIDENT});
  const HostMemoryNeed streamed = need({Placement::RESIDENT, Placement::STREAMED, Placement::RESIDENT});
  const HostMemoryNeed cpu = need({Placement::RESIDENT, Placement::CPU, Placement::RESIDENT});
  CHECK(resident.kv_cache == 0);
  CHECK(resident.streamed_pool == 0);
  CHECK(phased.kv_cache == 2 * kMiB);
  CHECK(phased.kv_cache == cpu.kv_cache);
  CHECK(phased.streamed_pool == align_up(13 * kMiB + 100, 4096));
  CHECK(phased.streamed_pool == streamed.streamed_pool);
  CHECK(phased.buffers == cpu.buffers);  // its CPU workspace
}

TEST_CASE("a stack entirely on the CPU needs no device memory") {
  MemoryPlanInput in = example_input();
  for (LayerFootprint& l : in.layers) l.placement = Placement::CPU;
  const MemoryPlan plan = plan_memory(in, 1);
  CHECK_FALSE(plan.uses_device);
  CHECK(plan.total() == 0);
  CHECK(plan.arena_bytes() == 0);
}

TEST_CASE("bad plan inputs are refused") {
  MemoryPlanInput in = example_input();
  in.staging_slots = 1;
  CHECK(contains(error_of([&] { plan_memory(in, 8 * kGiB); }, ErrorCategory::INVALID_ARGUMENT), "staging slots"));
  in.staging_slots = 6;
  CHECK_THROWS_AS(plan_memory(in, 8 * kGiB), Error);
  in.staging_slots = 2;
  in.margin.fraction = 0.9;
  CHECK(contains(error_of([&] { plan_memory(in, 8 * kGiB); }, ErrorCategory::INVALID_ARGUMENT), "margin"));
}

TEST_CASE("resident-first placement fills the budget in order and always fits") {
  MemoryPlanInput in = example_input();
  for (LayerFootprint& l : in.layers)
    if (l.placement != Placement::CPU) l.placement = Placement::STREAMED;
  const uint64_t minimum = compute_memory_plan(in, 0).minimum_budget;
  CHECK_THROWS_AS(resident_first_placement(in, minimum - 1), Error);
  size_t previous_resident = 0;
  for (uint64_t budget = minimum; budget < minimum + kGiB; budget += 16 * kMiB) {
    const std::vector<Placement> p = resident_first_placement(in, budget);
    REQUIRE(p.size() == in.layers.size());
    MemoryPlanInput placed = in;
    size_t resident = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      placed.layers[i].placement = p[i];
      resident += p[i] == Placement::RESIDENT;
      if (in.layers[i].placement == Placement::CPU) CHECK(p[i] == Placement::CPU);
    }
    CHECK_NOTHROW(plan_memory(placed, budget));
    CHECK(resident >= previous_resident);
    previous_resident = resident;
  }
  CHECK(previous_resident == 4);  // ample: every GPU layer resident
}

TEST_CASE("arena regions are aligned, disjoint, and refuse overflow with the breakdown") {
  CategoryBytes reserve{};
  reserve[static_cast<size_t>(MemoryCategory::RESIDENT_WEIGHTS)] = 10 * kKiB;
  reserve[static_cast<size_t>(MemoryCategory::STAGING)] = 3 * kKiB + 1;  // rounds up to 3 KiB + 256
  reserve[static_cast<size_t>(MemoryCategory::ACTIVATIONS)] = 4 * kKiB;
  const uintptr_t base = 0x7f0000000000;
  ArenaAllocator arena(base, reserve);
  CHECK(arena.capacity() == 10 * kKiB + 3 * kKiB + 256 + 4 * kKiB);

  std::mt19937_64 rng(test::test_seed(7));
  struct Piece {
    uintptr_t at;
    uint64_t bytes;
    MemoryCategory category;
  };
  std::vector<Piece> pieces;
  for (MemoryCategory c : {MemoryCategory::RESIDENT_WEIGHTS, MemoryCategory::STAGING, MemoryCategory::ACTIVATIONS}) {
    for (;;) {
      const uint64_t bytes = 1 + rng() % 700;
      if (arena.used(c) + align_up(bytes) > arena.reserved(c)) break;
      pieces.push_back({arena.allocate(c, bytes, "piece"), bytes, c});
    }
  }
  for (const Piece& p : pieces) {
    CHECK(p.at % kArenaAlignment == 0);
    CHECK(p.at >= base);
    CHECK(p.at + p.bytes <= base + arena.capacity());
  }
  for (size_t i = 0; i < pieces.size(); ++i)
    for (size_t j = i + 1; j < pieces.size(); ++j)
      CHECK((pieces[i].at + pieces[i].bytes <= pieces[j].at || pieces[j].at + pieces[j].bytes <= pieces[i].at));

  const uint64_t used_before = arena.used_total();
  const std::string message =
      error_of([&] { arena.allocate(MemoryCategory::STAGING, 2 * kKiB, "slot 9"); }, ErrorCategory::BUDGET);
  CHECK(arena.used_total() == used_before);  // a refused request changes nothing
  for (const char* s : {"slot 9", "staging slots", "requested", "used", "reserved", "resident weights", "activations"})
    CHECK(contains(message, s));
  CHECK(arena.high_water() == used_before);
  arena.reset(MemoryCategory::ACTIVATIONS);
  CHECK(arena.used(MemoryCategory::ACTIVATIONS) == 0);
  CHECK(arena.high_water() == used_before);
  CHECK_THROWS_AS(arena.allocate(MemoryCategory::KV_CACHE, 1, "kv"), Error);  // nothing reserved for it
  CHECK_NOTHROW(arena.allocate(MemoryCategory::KV_CACHE, 0, "empty kv"));
  CategoryBytes not_arena{};
  not_arena[static_cast<size_t>(MemoryCategory::MARGIN)] = 1;
  CHECK_THROWS_AS(ArenaAllocator(base, not_arena), Error);
  CHECK_THROWS_AS(ArenaAllocator(base + 8, reserve), Error);
}

TEST_CASE("a layer's tensors are laid out back to back at aligned offsets") {
  std::vector<uint8_t> a(1000), b(2000), c(300);
  const std::vector<WeightTensor> tensors = {
      {"norm", QuantMatrixView{GgmlType::F32, a.data(), 250, 1}},  // 1000 bytes
      {"w", QuantMatrixView{GgmlType::Q4_0, b.data(), 64, 11}},    // 11 rows x 36 bytes = 396
      {"w2", QuantMatrixView{GgmlType::Q4_K, c.data(), 256, 2}},   // 2 x 144 = 288
  };
  const LayerLayout layout = layer_layout(tensors);
  REQUIRE(layout.offsets.size() == 3);
  CHECK(layout.offsets[0] == 0);
  CHECK(layout.offsets[1] == 1024);
  CHECK(layout.offsets[2] == 1024 + 512);
  CHECK(layout.bytes == 1024 + 512 + 512);
  std::vector<std::byte> block(layout.bytes);
  const auto views = views_in_block(tensors, layout, block.data());
  CHECK(views[2].data == block.data() + 1536);
  CHECK(views[2].n_rows == 2);
  CHECK(views[1].type == GgmlType::Q4_0);
  const std::vector<WeightTensor> bad = {{"odd", QuantMatrixView{GgmlType::Q4_0, b.data(), 33, 1}}};
  CHECK(contains(error_of([&] { layer_layout(bad); }, ErrorCategory::INVALID_ARGUMENT), "odd"));
}

TEST_CASE("the minimum budget takes the best split between resident and streamed") {
  MemoryPlanInput in;
  in.context_bytes = 300 * kMiB;
  in.staging_slots = 3;
  in.cublas_workspace_bytes = 4 * kMiB;
  // Two GPU layers and three slots: streaming both needs 3 x 100 MiB, keeping both resident 200 MiB.
  in.layers = {{100 * kMiB, 0, Placement::STREAMED}, {100 * kMiB, 0, Placement::STREAMED}};
  MemoryPlanInput resident = in;
  for (LayerFootprint& l : resident.layers) l.placement = Placement::RESIDENT;
  CHECK(compute_memory_plan(in, 0).minimum_budget == compute_memory_plan(resident, 0).required_budget);
  CHECK(compute_memory_plan(in, 0).required_budget > compute_memory_plan(in, 0).minimum_budget);
  // One giant layer among small ones: the giant stays resident, the rest stream (1 GiB + 3 x 10 MiB).
  in.layers = {{kGiB, 0, Placement::STREAMED}};
  for (int i = 0; i < 8; ++i) in.layers.push_back({10 * kMiB, 0, Placement::STREAMED});
  MemoryPlanInput split = in;
  split.layers[0].placement = Placement::RESIDENT;
  const MemoryPlan best = compute_memory_plan(split, 0);
  CHECK(best[MemoryCategory::RESIDENT_WEIGHTS] + best[MemoryCategory::STAGING] == kGiB + 30 * kMiB);
  CHECK(compute_memory_plan(in, 0).minimum_budget == best.required_budget);
}

TEST_CASE("resident-first placement keeps a layer that fits the budget exactly, and streams it one byte below") {
  // GPU layers in increasing size (odd byte counts from a fixed seed), so the largest streamed layer, which sizes the
  // staging slots, is always the last one: making one more layer resident always raises the required budget, and
  // the placement at a budget is "the first j layers resident". A CPU layer in the middle must be skipped.
  std::mt19937_64 rng(20240611);
  MemoryPlanInput in;
  in.context_bytes = 300 * kMiB + 17;
  in.staging_slots = 2;
  in.fp16_scratch_bytes = 8 * kMiB + 3;
  in.activation_bytes = 5 * kMiB + 11;
  in.cublas_workspace_bytes = 4 * kMiB;
  uint64_t weight = 20 * kMiB;
  for (int i = 0; i < 6; ++i) {
    weight += 3 * kMiB + rng() % kMiB;
    in.layers.push_back({weight, kMiB + rng() % kMiB, Placement::STREAMED});
    if (i == 2) in.layers.push_back({500 * kMiB + 1, 0, Placement::CPU});
  }
  std::vector<size_t> gpu;  // indices of the GPU layers, in order
  for (size_t i = 0; i < in.layers.size(); ++i)
    if (in.layers[i].placement != Placement::CPU) gpu.push_back(i);
  // The placement with the first j GPU layers resident, and the budget it needs.
  auto first_resident = [&](size_t j) {
    std::vector<Placement> p;
    for (const LayerFootprint& l : in.layers) p.push_back(l.placement);
    for (size_t g = 0; g < j; ++g) p[gpu[g]] = Placement::RESIDENT;
    return p;
  };
  auto required_for = [&](const std::vector<Placement>& p) {
    MemoryPlanInput placed = in;
    for (size_t i = 0; i < p.size(); ++i) placed.layers[i].placement = p[i];
    return compute_memory_plan(placed, 0).required_budget;
  };
  const uint64_t all_resident = required_for(first_resident(gpu.size()));
  for (size_t j = 1; j < gpu.size(); ++j) {
    CAPTURE(j);
    const uint64_t exact = required_for(first_resident(j));
    REQUIRE(exact > required_for(first_resident(j - 1)));  // the set-up above: more resident, more budget
    // Exactly the budget the first j layers need: they stay resident. The next does not fit with its slots, but all
    // of them may (all resident drops the staging slots, which can need less than streaming the last layers).
    const bool all_fit = all_resident <= exact;
    if (j + 1 < gpu.size()) REQUIRE(required_for(first_resident(j + 1)) > exact);
    CHECK(resident_first_placement(in, exact) == (all_fit ? first_resident(gpu.size()) : first_resident(j)));
    // One byte less: layer j - 1 is streamed, and with it every layer after it (unless everything fits).
    CHECK(resident_first_placement(in, exact - 1) ==
          (all_resident <= exact - 1 ? first_resident(gpu.size()) : first_resident(j - 1)));
  }
}

TEST_CASE("resident-first placement finds the longest prefix that fits, not the first that overflows") {
  // Equal blocks: with some streamed, the staging slots cost two blocks; all resident costs none. Between "k blocks
  // + 2 slots" and "all n blocks" there are budgets where all of them fit but no shorter prefix does with its slots.
  MemoryPlanInput in;
  in.context_bytes = 300 * kMiB;
  in.staging_slots = 2;
  in.fp16_scratch_bytes = 4 * kMiB;
  in.activation_bytes = 8 * kMiB;
  in.cublas_workspace_bytes = 32 * kMiB;
  for (int i = 0; i < 4; ++i) in.layers.push_back({12 * kMiB, kMiB / 4, Placement::STREAMED});
  in.layers.push_back({8 * kMiB, 0, Placement::STREAMED});  // a smaller head
  MemoryPlanInput all = in;
  for (LayerFootprint& l : all.layers) l.placement = Placement::RESIDENT;
  const uint64_t all_resident = compute_memory_plan(all, 0).required_budget;
  CHECK(resident_first_placement(in, all_resident) == std::vector<Placement>(5, Placement::RESIDENT));

  // Against brute force over random stacks and budgets: the longest fitting prefix, every time.
  std::mt19937_64 rng(test::test_seed(4242));
  for (int trial = 0; trial < 200; ++trial) {
    CAPTURE(trial);
    MemoryPlanInput r = in;
    r.layers.clear();
    const int n = 1 + static_cast<int>(rng() % 7);
    for (int i = 0; i < n; ++i)
      r.layers.push_back(
          {kMiB + rng() % (40 * kMiB), rng() % (2 * kMiB), rng() % 5 == 0 ? Placement::CPU : Placement::STREAMED});
    std::vector<size_t> gpu;
    for (size_t i = 0; i < r.layers.size(); ++i)
      if (r.layers[i].placement != Placement::CPU) gpu.push_back(i);
    auto prefix = [&](size_t k) {
      MemoryPlanInput p = r;
      for (size_t g = 0; g < gpu.size(); ++g)
        p.layers[gpu[g]].placement = g < k ? Placement::RESIDENT : Placement::STREAMED;
      return p;
    };
    const uint64_t minimum = compute_memory_plan(prefix(0), 0).required_budget;
    const uint64_t budget = minimum + rng() % (200 * kMiB);
    size_t best = 0;
    for (size_t k = 0; k <= gpu.size(); ++k)
      if (compute_memory_plan(prefix(k), budget).required_budget <= budget) best = k;
    std::vector<Placement> expected;
    for (const LayerFootprint& l : prefix(best).layers) expected.push_back(l.placement);
    CHECK(resident_first_placement(r, budget) == expected);
  }
}

TEST_CASE("GEMM token chunks: balanced, never above the scratch, never below the kernel's minimum") {
  using device_sizing::gemm_token_chunk;
  CHECK(gemm_token_chunk(100, 10, 1000) == 100);  // all fit: one chunk
  CHECK(gemm_token_chunk(100, 10, 999) == 50);    // 99 fit: two chunks of 50, not 99 + 1
  CHECK(gemm_token_chunk(4608, 15360, size_t{2184} * 15360) == 1536);
  CHECK(gemm_token_chunk(4608, 15360, 15359) == 0);  // not one token
  std::mt19937_64 rng(test::test_seed(77));
  for (int i = 0; i < 2000; ++i) {
    const int64_t t = 1 + static_cast<int64_t>(rng() % 5000), k = 1 + static_cast<int64_t>(rng() % 4000);
    const size_t elems = static_cast<size_t>(k) * (1 + rng() % 6000);
    const int64_t c = gemm_token_chunk(t, k, elems);
    INFO("T ", t, ", K ", k, ", scratch ", elems, ", chunk ", c);
    REQUIRE(c >= 1);
    CHECK(static_cast<size_t>(c * k) <= elems);  // a chunk fits the scratch
    const int64_t chunks = (t + c - 1) / c;
    CHECK(chunks == (t + static_cast<int64_t>(std::min<size_t>(elems / static_cast<size_t>(k), t)) - 1) /
                        static_cast<int64_t>(std::min<size_t>(elems / static_cast<size_t>(k), t)));  // fewest chunks
    CHECK(t - (chunks - 1) * c >= 1);            // the last chunk is not empty
    CHECK(c - (t - (chunks - 1) * c) < chunks);  // balanced: the last is at most chunks-1 shorter
  }
  const QuantMatrixView linear2{GgmlType::Q4_0, nullptr, 15360, 3072};
  // Capped at 64 MiB of halves: 2184 tokens fit, so three chunks of 1536.
  CHECK(device_sizing::gemm_activation_scratch_capped(linear2, 4608, (size_t{64} << 20) / 2) == size_t{1536} * 15360);
  // A cap below the kernel's smallest chunk: 64 tokens per chunk (4608 / 72 chunks).
  CHECK(device_sizing::gemm_activation_scratch_capped(linear2, 4608, 1000) == size_t{64} * 15360);
  CHECK(device_sizing::gemm_activation_scratch_capped(linear2, 40, 1000) == size_t{40} * 15360);
  CHECK(device_sizing::gemm_activation_scratch_capped(linear2, 512, size_t{1} << 40) == size_t{512} * 15360);
}

TEST_CASE("the scheduler's FP16 activation scratch is the capped chunk of the widest GEMM input") {
  LayerDemand layer;
  layer.name = "single";
  layer.width = 3072;
  layer.weight_bytes = 1 << 20;
  layer.matmuls = {QuantMatrixView{GgmlType::Q4_0, nullptr, 3072, 21504},
                   QuantMatrixView{GgmlType::Q4_0, nullptr, 15360, 3072}};
  StackOptions options;
  options.max_tokens = 4608;
  const std::vector<Placement> gpu = {Placement::STREAMED};
  const GpuSizing capped = gpu_sizing(std::span(&layer, 1), gpu, options);
  CHECK(capped.activation_fp16_elems == size_t{1536} * 15360);  // 47 MB rather than 141 MB
  options.fp16_activation_limit = uint64_t{1} << 30;
  CHECK(gpu_sizing(std::span(&layer, 1), gpu, options).activation_fp16_elems == size_t{4608} * 15360);
  options.max_tokens = 512;  // an LLM prompt: under the cap, no chunks
  options.fp16_activation_limit = uint64_t{64} << 20;
  const GpuSizing prompt = gpu_sizing(std::span(&layer, 1), gpu, options);
  CHECK(prompt.activation_fp16_elems == size_t{512} * 15360);
  CHECK(prompt.fp32_tile_floats == 0);
  // The FP32-then-cast comparison path: a float temporary as large as the weight tile, counted in the plan.
  options.dequant_via_fp32 = true;
  const GpuSizing via_fp32 = gpu_sizing(std::span(&layer, 1), gpu, options);
  CHECK(via_fp32.weight_tile_elems == prompt.weight_tile_elems);
  CHECK(via_fp32.fp32_tile_floats == prompt.weight_tile_elems);
  const MemoryPlanInput with = memory_plan_input(std::span(&layer, 1), gpu, options, 0);
  options.dequant_via_fp32 = false;
  const MemoryPlanInput without = memory_plan_input(std::span(&layer, 1), gpu, options, 0);
  CHECK(with.fp16_scratch_bytes == without.fp16_scratch_bytes + align_up(prompt.weight_tile_elems * 4));
}
