#include "ferry/models/default_model.hpp"

#include <cstdlib>

#include "ferry/models/model_maker.hpp"
#include "ferry/models/model_presets.hpp"

namespace ferry {

std::filesystem::path ferry_cache_dir() {
  if (const char* dir = std::getenv("FERRY_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::filesystem::path(xdg) / "ferry";
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".cache" / "ferry";
  return std::filesystem::temp_directory_path() / "ferry";
}

std::filesystem::path ensure_default_model(void (*announce)(const std::filesystem::path&)) {
  const std::filesystem::path dir = ferry_cache_dir();
  // The seed and type are part of the name so a change here never reuses a stale file.
  const std::filesystem::path path = dir / "default-small-q4_k-seed1.gguf";
  if (std::filesystem::exists(path)) return path;
  std::filesystem::create_directories(dir);
  if (announce) announce(path);
  write_llama_model(llama_preset("small"), MakeModelOptions{ModelFileType::Q4_K, 1, 32, "ferry default (small)"},
                    path);
  return path;
}

}  // namespace ferry
