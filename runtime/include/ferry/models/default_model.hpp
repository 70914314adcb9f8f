// The built-in default model: a small llama-shaped Q4_K model made on first use and cached, so `ferry run` works on a
// fresh machine with nothing downloaded.
#pragma once

#include <filesystem>

namespace ferry {

// $FERRY_CACHE_DIR, else $XDG_CACHE_HOME/ferry, else $HOME/.cache/ferry, else the system temp directory/ferry.
std::filesystem::path ferry_cache_dir();
// Path of the default model, generating it (atomically) if it is not there yet. `announce` is called before a
// generation starts so the user knows why the first run takes a moment.
std::filesystem::path ensure_default_model(void (*announce)(const std::filesystem::path&) = nullptr);

}  // namespace ferry
