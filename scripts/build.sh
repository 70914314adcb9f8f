#!/bin/bash
# Configures and builds ferry into build/ (Release). CUDA is used when a toolkit is found (FERRY_CUDA=AUTO); pass extra
# CMake arguments through, e.g. scripts/build.sh -DFERRY_CUDA=OFF. FERRY_BUILD_DIR overrides the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${FERRY_BUILD_DIR:-build}
export PATH=$PATH:/usr/local/cuda/bin
generator=()
# A folder configured before (e.g. by `cmake --preset release`, Makefiles) keeps its generator; CMake refuses a change.
[ -f "$dir/CMakeCache.txt" ] || { command -v ninja >/dev/null && generator=(-G Ninja); }
cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
