// `ferry calibrate [--force] [--json] [-o FILE]`: measures the rates the cost model predicts from (the CPU kernels per
// weight type, the host's read bandwidth, and with a GPU the pinned link by copy size and the GPU kernels) in a few
// seconds, and keeps them in the cache directory for `plan`, `run --policy auto` and the rest. A calibration of this
// machine already in the cache is shown, not measured again (unless --force); a corrupt one, or one made on another
// machine (another GPU, driver, CPU or thread count), is measured again and replaced. -o also writes the profile to
// FILE, to plan for this machine elsewhere (`ferry plan --device-profile FILE`).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "ferry/atomic_file.hpp"
#include "ferry/models/this_device.hpp"
#include "ferry/offload/size_parse.hpp"
#include "model_command.hpp"

namespace ferry::cli {
namespace {

struct CalibrateFlags {
  bool force = false;
  bool json = false;
  std::string output;
};

std::string rate_text(double bytes_per_s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GB/s", bytes_per_s / 1e9);
  return text;
}

std::string profile_text(const DeviceProfile& p) {
  std::string out = "CPU: " + p.cpu + ", " + std::to_string(p.cpu_threads) + " threads\n";
  out += "  host read            " + rate_text(p.host_read_bytes_per_s) + "\n";
  for (const auto& [type, rate] : p.cpu_gemv_bytes_per_s)
    out += "  GEMV " + type + std::string(type.size() < 16 ? 16 - type.size() : 0, ' ') + rate_text(rate) + "\n";
  char line[96];
  std::snprintf(line, sizeof line, "  int8 Q4_0, T=64      %.1f GFLOP/s\n", p.cpu_int8_flops / 1e9);
  out += line;
  std::snprintf(line, sizeof line, "  GEMM Q4_0, T=128     %.1f GFLOP/s\n", p.cpu_gemm_flops / 1e9);
  out += line;
  if (!p.has_gpu) return out + "GPU: none\n";
  out += "GPU: " + p.name + ", driver " + p.driver + ", CUDA context " + format_size(p.context_bytes) + "\n";
  for (const LinkPoint& l : p.link) {
    const std::string size = format_size(l.bytes);
    out += "  link, " + size + " copies" + std::string(size.size() < 12 ? 12 - size.size() : 0, ' ') +
           rate_text(l.bytes_per_s) + "\n";
  }
  for (const auto& [type, rate] : p.gpu_gemv_bytes_per_s)
    out += "  GEMV " + type + std::string(type.size() < 16 ? 16 - type.size() : 0, ' ') + rate_text(rate) + "\n";
  std::snprintf(line, sizeof line, "  GEMM Q4_0, T=512     %.1f TFLOP/s\n", p.gpu_gemm_flops / 1e12);
  return out + line;
}

int run_calibrate(const CalibrateFlags& f) {
  check_output_path("-o", f.output);
  const CachedCalibration cached = read_cached_calibration();
  DeviceProfile profile;
  if (cached.usable && !f.force) {
    profile = cached.profile;
    std::fprintf(stderr, "ferry: the calibration of this machine in %s (--force measures again)\n",
                 device_profile_cache_path().c_str());
  } else {
    if (!cached.usable) std::fprintf(stderr, "ferry: measuring: %s\n", cached.problem.c_str());
    profile = calibrate_this_device();
    std::fprintf(stderr, "ferry: saved to %s\n", device_profile_cache_path().c_str());
  }
  if (!f.output.empty()) {
    AtomicFile out(f.output);
    const std::string json = profile.to_json() + "\n";
    out.write(std::as_bytes(std::span(json)));
    out.commit();
  }
  write_stdout(f.json ? profile.to_json() + "\n" : profile_text(profile));
  return 0;
}

}  // namespace

Action add_calibrate_command(CLI::App& app) {
  auto f = std::make_shared<CalibrateFlags>();
  CLI::App* sub =
      app.add_subcommand("calibrate", "Measure the CPU, GPU and link rates the planner's cost model uses (cached)");
  sub->add_flag("--force", f->force, "Measure again even when the cache holds this machine's calibration");
  sub->add_flag("--json", f->json, "Print the profile as JSON (the --device-profile format of `plan`)");
  sub->add_option("-o,--output", f->output, "Also write the profile to this file");
  return [f] { return run_calibrate(*f); };
}

}  // namespace ferry::cli
