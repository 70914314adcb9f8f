// The flags of the commands that generate text (`run`, `chat`), defined once: sampling, context, placement and the
// chat format, each with its registration on a CLI11 subcommand and its validation (bad_flag naming the flag, before
// anything is loaded).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ferry/models/llama/runner.hpp"
#include "ferry/text/chat.hpp"
#include "ferry/text/sampler.hpp"
#include "model_command.hpp"
#include "override_flags.hpp"

namespace CLI {
class App;
}

namespace ferry::cli {

// Numbers that CLI11 would convert loosely (seeds, NaN) stay text until validated.
struct SamplingFlags {
  float temperature = 0.0f;
  int32_t top_k = 40;
  float top_p = 0.95f;
  std::string seed = "0";
};
void add_sampling_flags(CLI::App& cmd, SamplingFlags& f);  // --temp --top-k --top-p --seed
SamplerConfig sampler_config(const SamplingFlags& f);

struct ContextFlags {
  int64_t n_ctx = 0;  // 0: the model's training context, at most 2048
  bool force_ctx = false;
};
void add_context_flags(CLI::App& cmd, ContextFlags& f);  // --ctx --force-ctx
int64_t context_length(const ContextFlags& f, const LoadedModel& model);

struct PlacementFlags {
  std::string vram = "8GiB";
  std::string policy = "resident-stream";
  int prefetch = 1;
  std::string trace;
  std::string link_gbps;  // empty: the real link
  OverrideFlags overrides;
};
// --vram --policy --prefetch --trace --link-gbps, and the override flags (--resident --stream --cpu --plan).
void add_placement_flags(CLI::App& cmd, PlacementFlags& f);
// Validates the flags (the trace file's folder included) and reads a --plan file; n_ctx and the logits options are the
// caller's.
LlamaRunnerOptions runner_options(const PlacementFlags& f);
// "--vram 8GiB, --policy auto" or "--plan FILE, budget 8 GiB" (placement_origin) for a run's report.
std::string placement_origin(const PlacementFlags& f, const LlamaRunnerOptions& options);

struct ChatFlags {
  std::string system;
  std::string format;  // empty: from the model
};
void add_chat_flags(CLI::App& cmd, ChatFlags& f);  // --system --chat-format
// The forced format, if any (bad_flag listing the names for an unknown one); --system must be UTF-8.
std::optional<ChatFormatId> chat_format_flag(const ChatFlags& f);
// The model's chat format (chat_format_for_model over its tokenizer.chat_template).
ModelChatFormat model_chat_format(const LoadedModel& model, std::optional<ChatFormatId> forced);

}  // namespace ferry::cli
