#!/bin/bash
# The README's main-job command: installs the dependencies, builds ferry and generates text with the built-in
# default model (a small llama-shaped Q4_K model, made on first use and cached). Extra arguments go to `ferry run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/ferry run -n 32 "$@"
