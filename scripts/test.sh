#!/bin/bash
# The README's test command: installs the dependencies, builds, and runs every test with CTest. GPU tests report
# "skipped: no GPU" on machines without one. Extra arguments go to CMake (e.g. -DCMAKE_CUDA_ARCHITECTURES=89).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh "$@"
# install-deps.sh installed the gguf-py and tokenizers oracles, and the checkout has ../shared/data: their absence
# must fail the tests here, not skip them.
FERRY_REQUIRE_ORACLE=1 FERRY_REQUIRE_SHARED_DATA=1 ctest --test-dir "${FERRY_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)"
