#include "generation_flags.hpp"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "ferry/error.hpp"
#include "ferry/text/utf8.hpp"

namespace ferry::cli {
namespace {

std::string number_text(float v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", static_cast<double>(v));
  return text;
}

// A seed is a whole number in [0, 2^64): "-1" or "2^64" must not wrap or clamp to another seed silently.
uint64_t parse_seed(const std::string& text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    bad_flag("--seed", quote_name(text) + " is not a whole number from 0 to 18446744073709551615");
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE) bad_flag("--seed", quote_name(text) + " is larger than 18446744073709551615 (2^64 - 1)");
  return v;
}

}  // namespace

void add_sampling_flags(CLI::App& cmd, SamplingFlags& f) {
  cmd.add_option("--temp", f.temperature, "Sampling temperature in [0, 100] (0: greedy)");
  cmd.add_option("--top-k", f.top_k, "Top-k cut (0: none)")->check(CLI::Range(0, 1 << 24));
  cmd.add_option("--top-p", f.top_p, "Nucleus cut in (0, 1]");
  cmd.add_option("--seed", f.seed, "Sampling seed, 0 to 2^64 - 1");
}

SamplerConfig sampler_config(const SamplingFlags& f) {
  if (!std::isfinite(f.temperature) || f.temperature < 0.0f || f.temperature > 100.0f)
    bad_flag("--temp", number_text(f.temperature) + " is outside [0, 100] (0: greedy)");
  if (!(f.top_p > 0.0f && f.top_p <= 1.0f)) bad_flag("--top-p", number_text(f.top_p) + " is outside (0, 1]");
  return SamplerConfig{f.temperature, f.top_k, f.top_p, parse_seed(f.seed)};
}

void add_context_flags(CLI::App& cmd, ContextFlags& f) {
  cmd.add_option("--ctx", f.n_ctx,
                 "Context length (default: the model's training context, at most 2048; beyond it only with "
                 "--force-ctx)")
      ->check(CLI::Range(1, 1 << 24));
  cmd.add_flag("--force-ctx", f.force_ctx, "Allow --ctx beyond the model's training context");
}

int64_t context_length(const ContextFlags& f, const LoadedModel& model) {
  return choose_context(f.n_ctx, f.force_ctx, model.config, model.path, "--ctx");
}

void add_placement_flags(CLI::App& cmd, PlacementFlags& f) {
  CLI::Option* vram =
      cmd.add_option("--vram", f.vram, "VRAM budget: everything ferry holds on the GPU (8GiB, 7.5G, 512MiB)");
  CLI::Option* policy =
      cmd.add_option("--policy", f.policy, "resident-first | resident-stream | stream-all | cpu-all | auto");
  cmd.add_option("--prefetch", f.prefetch, "Streamed layers copied ahead of compute (1-4)")->check(CLI::Range(1, 4));
  cmd.add_option("--trace", f.trace, "Write the copy/compute/CPU spans as Chrome trace JSON to this file");
  cmd.add_option("--link-gbps", f.link_gbps,
                 "Simulate a slower host link: pace streamed layers' host-to-device copies to this many GB/s "
                 "(e.g. 25 or 12, as PCIe 4.0 x16 or x8); reported as simulated");
  add_override_flags(cmd, f.overrides, vram, policy);
}

LlamaRunnerOptions runner_options(const PlacementFlags& f) {
  LlamaRunnerOptions ro;
  ro.vram_budget = vram_flag(f.vram);
  ro.policy = policy_flag(f.policy);
  ro.prefetch_depth = f.prefetch;
  check_output_path("--trace", f.trace);
  ro.trace_path = f.trace;
  ro.link_gbps = link_flag(f.link_gbps);
  apply_override_flags(f.overrides, ro);
  return ro;
}

std::string placement_origin(const PlacementFlags& f, const LlamaRunnerOptions& options) {
  return placement_origin(f.overrides, f.vram, f.policy, options.vram_budget);
}

void add_chat_flags(CLI::App& cmd, ChatFlags& f) {
  cmd.add_option("--system", f.system, "System message that opens the conversation (UTF-8)");
  cmd.add_option("--chat-format", f.format,
                 "Chat format, instead of the one the model's tokenizer.chat_template names: " + chat_format_names())
      ->check([](const std::string& name) {
        return name.empty() ? "an empty name is not a chat format (formats: " + chat_format_names() + ")"
                            : std::string();
      });
}

std::optional<ChatFormatId> chat_format_flag(const ChatFlags& f) {
  if (const size_t at = first_invalid_utf8(f.system); at != kValidUtf8)
    bad_flag("--system", "the text is not valid UTF-8 (ill-formed byte sequence at byte " + std::to_string(at) + ")");
  if (f.format.empty()) return std::nullopt;
  const std::optional<ChatFormatId> id = parse_chat_format(f.format);
  if (!id)
    bad_flag("--chat-format", quote_name(f.format) + " is not a chat format (formats: " + chat_format_names() + ")");
  return id;
}

ModelChatFormat model_chat_format(const LoadedModel& model, std::optional<ChatFormatId> forced) {
  constexpr const char* kKey = "tokenizer.chat_template";
  const std::optional<std::string> jinja =
      model.file.find(kKey) ? std::optional<std::string>(model.file.get_string(kKey)) : std::nullopt;
  return chat_format_for_model(model.tokenizer, model.add_bos, jinja, forced, model.path);
}

}  // namespace ferry::cli
