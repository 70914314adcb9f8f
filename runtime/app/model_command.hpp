// What the commands that run a model (`run`, `perplexity`) share: checking their common flags before anything is
// loaded, finding the default model, loading a llama model with its tokenizer, and the lines they print about where
// the layers ran.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/gguf.hpp"
#include "ferry/models/default_model.hpp"
#include "ferry/models/llama/model.hpp"
#include "ferry/offload/scheduler.hpp"
#include "ferry/policies/planner.hpp"
#include "ferry/text/tokenizer.hpp"

namespace ferry::cli {

// INVALID_ARGUMENT (exit 2) "FLAG: WHY".
[[noreturn]] void bad_flag(const std::string& flag, const std::string& why);

// The flags' values in the runtime's types; bad_flag naming the flag when they do not parse.
uint64_t vram_flag(const std::string& text);
Policy policy_flag(const std::string& text);
// --link-gbps RATE: empty (not given) is 0, copies at the link's own speed; otherwise a plain decimal rate in GB/s that
// link_pacing.hpp can simulate.
double link_flag(const std::string& text);
// "12" for 12 GB/s, as the outputs print a simulated link's rate.
std::string link_rate_text(double gbps);
// What --link-gbps did to a run with these placements, for its report: "" when gbps is 0; "N streamed layers' copies
// paced to R GB/s (simulated link)"; or why it had no effect (no GPU, so no copies; nothing streamed).
std::string link_note(double gbps, const std::vector<Placement>& placements);

// An output written at the end of a command: a path that cannot be written is found out now, before the model is
// loaded (bad_flag for a folder, IO naming the flag otherwise). Empty: nothing to check.
void check_output_path(const std::string& flag, const std::string& path);

// The model to load: `model` as given, or the default model (fetched or generated once, with progress on stderr).
// `default_choice` comes from default_model_choice(), read while the flags are checked.
std::string model_path_or_default(const std::string& model, DefaultModelChoice default_choice);

// A llama model mapped, with its weights' views and its tokenizer. Not movable: runners keep references into it.
struct LoadedModel {
  explicit LoadedModel(const std::string& path);
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  std::string path;
  GgufFile file;
  LlamaConfig config;
  LlamaWeights weights;
  Tokenizer tokenizer;
  bool add_bos;  // tokenizer.add_bos_default(): the metadata's flag, else llama.cpp's default
  // "FILE: TENSOR is not finite" / "FILE: every weight is finite", for errors about non-finite logits.
  std::string explain_non_finite() const;
};

// The context a command runs with: `requested` (0: the model's training context, at most 2048); beyond the training
// context only with `force` (bad_flag naming `flag` otherwise: positions the model never saw give garbage).
int64_t choose_context(int64_t requested, bool force, const LlamaConfig& config, const std::string& model,
                       const std::string& flag);

// "ferry: no GPU (...): every layer runs on the CPU" when there is no GPU and the policy wanted one.
void note_when_cpu_only(Policy policy);

// "device memory: arena ... reserved, high-water ...; process ..." as design.md counts it.
std::string device_memory_line(const MemoryReport& memory);

// Standard output is the product of a command: a failed write (a full disk, a closed pipe reader) must fail it.
void write_stdout(std::string_view text);

}  // namespace ferry::cli
