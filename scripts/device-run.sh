#!/bin/bash
# One call on the GPU machine: build ferry with CUDA for the H100 (sm_90), run the test suite and the benchmarks, and
# leave logs and JSON results under $OUT. Run from the repository root there, with .devdeps carried along
# (see ../shared/device/README.md):
#   bash scripts/device-run.sh [TEST_REGEX] [BENCH...]
# TEST_REGEX selects CTest tests (default: all); BENCH names bench executables to run (default: none; "all" = every
# bench_* target that was built). Each bench writes <bench>.json and its markdown table <bench>.md; logs and results
# come back packed in $OUT/results.tgz. FERRY_CMAKE_ARGS adds CMake arguments (e.g. -DFERRY_BENCH_GIT_SHA=...).
set -uo pipefail
# Everything goes to a scratch folder that is packed into $OUT/results.tgz on exit (also on a timeout), since only a
# few files come back from the GPU machine.
final=${OUT:-$PWD/out}
mkdir -p "$final"
out=$(mktemp -d)
trap 'tar czf "$final/results.tgz" -C "$out" . 2>/dev/null' EXIT
regex=${1:-.}
shift || true
benches=("$@")

nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
  --format=csv | tee "$out/gpu.txt"
cmake_args=$(bash .devdeps/unpack.sh) || exit 1
export LD_LIBRARY_PATH=/opt/ferry-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
start=$(date +%s)
# shellcheck disable=SC2086
cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFERRY_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 $cmake_args ${FERRY_CMAKE_ARGS:-} >"$out/configure.log" 2>&1 || { tail -40 "$out/configure.log"; exit 1; }
cmake --build build-device -j16 >"$out/build.log" 2>&1 || { grep -E "error|Error" "$out/build.log" | head -60; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
# This machine has a GPU: a GPU test that skips means a broken driver or build, so it fails (FERRY_REQUIRE_GPU).
FERRY_REQUIRE_GPU=1 ctest --test-dir build-device --output-on-failure -R "$regex" --timeout 600 2>&1 | tee "$out/ctest.log" | tail -40
test_status=${PIPESTATUS[0]}
[ "$test_status" -eq 0 ] || echo "TESTS FAILED (ctest status $test_status): the benchmarks below come from a failing build"

if [ "${#benches[@]}" -eq 1 ] && [ "${benches[0]}" = all ]; then
  mapfile -t benches < <(cd build-device/bench 2>/dev/null && ls bench_* 2>/dev/null)
fi
for b in "${benches[@]}"; do
  exe=build-device/bench/$b
  [ -x "$exe" ] || { echo "no bench $b"; continue; }
  echo "== $b"
  "$exe" -o "$out/$b.json" 2>&1 | tee "$out/$b.md"
done
# Further commands (FERRY_EXTRA), run with RESULTS set to the folder that is packed into results.tgz.
if [ -n "${FERRY_EXTRA:-}" ]; then RESULTS=$out bash -c "$FERRY_EXTRA"; fi
exit "$test_status"
