#!/bin/bash
# One call on the GPU machine: build ferry with CUDA for Hopper (sm_90), run tests and benchmarks, and leave logs and
# JSON results under $OUT. Run from the repository root there, with .devdeps carried along
# (see ../shared/device/README.md):
#   bash scripts/device-run.sh [TEST_REGEX] [BENCH...]
# TEST_REGEX selects CTest tests (default: all; "NONE" runs none); BENCH names bench executables to run (default: none;
# "all" = every bench_* target that was built). Each bench writes <bench>.json and its markdown table <bench>.md.
#
# Modes (environment), instead of the one plain CTest run; TEST_REGEX then defaults to the GPU tests ("cuda|gpu"):
#   FERRY_REPEAT=N     runs the selected tests N times in a row with `ctest -j4` (GPU tests contend for the device, as
#                      in a parallel CI run); stops at the first failing run and shows its log.
#   FERRY_SANITIZE=1   runs each selected GPU test executable under compute-sanitizer, once per tool
#                      (FERRY_SANITIZE_TOOLS, default "memcheck racecheck initcheck"), with FERRY_TEST_QUICK=1 (smaller
#                      shapes: sanitizers slow kernels 10-100x) and a limit of FERRY_SANITIZE_TIMEOUT seconds per run
#                      (default 300), FERRY_SANITIZE_JOBS runs at once (default 6); one line per (test, tool), the
#                      tail of every failing log. racecheck checks ferry's kernels only in the kernel tests (cuBLAS's
#                      are closed and report hazards it cannot judge) and watches every kernel in the stack tests;
#                      there and in initcheck, only reports in ferry's kernels count (and the test must pass).
# Other settings: FERRY_CMAKE_ARGS adds CMake arguments (e.g. -DFERRY_BENCH_GIT_SHA=...); FERRY_EXTRA is a command run
# at the end with RESULTS set to the folder that is packed.
#
# What comes back: $OUT/summary.txt (also printed as the last lines: the status of every step and the name of every
# failing test) and $OUT/results.tgz (every log and result). The exit status is non-zero when anything failed.
set -uo pipefail
# Everything goes to a scratch folder that is packed into $OUT/results.tgz on exit (also on a timeout), since only a
# few files come back from the GPU machine.
final=${OUT:-$PWD/out}
mkdir -p "$final"
out=$(mktemp -d)
summary=$out/summary.txt
: >"$summary"
status=0
note() { echo "$*" | tee -a "$summary"; }
fail() {
  status=1
  note "$@"
}
# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
  cp "$summary" "$final/summary.txt" 2>/dev/null
  tar czf "$final/results.tgz" -C "$out" . 2>/dev/null
  echo
  echo "== summary (also in \$OUT/summary.txt)"
  cat "$summary"
}
trap finish EXIT

repeat=${FERRY_REPEAT:-}
sanitize=${FERRY_SANITIZE:-}
if [ -n "$repeat" ] && ! [[ "$repeat" =~ ^[1-9][0-9]*$ ]]; then
  echo "FERRY_REPEAT='$repeat': expected a positive number of runs" >&2
  exit 2
fi
if [ -n "$sanitize" ] && [ "$sanitize" != 1 ]; then
  echo "FERRY_SANITIZE='$sanitize': expected 1 (or unset)" >&2
  exit 2
fi
if [ -n "$repeat" ] || [ -n "$sanitize" ]; then default_regex='cuda|gpu'; else default_regex=.; fi
regex=${1:-$default_regex}
shift || true
benches=("$@")

nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.current,pcie.link.width.current \
  --format=csv | tee "$out/gpu.txt"
cmake_args=$(bash .devdeps/unpack.sh) || { fail "setup: FAILED (.devdeps/unpack.sh)"; exit 1; }
# The GPU machine's copy of the repository carries the working tree, not an up-to-date .git: the commit the reports
# name comes from devwork/git-sha when a call carries it ("SHA DIRTY", written here by
# `echo "$(git rev-parse HEAD) $(git diff --quiet HEAD; echo $?)" > devwork/git-sha`).
if [ -f devwork/git-sha ]; then
  read -r git_sha git_dirty <devwork/git-sha
  [[ $git_sha =~ ^[0-9a-f]{7,40}$ ]] && cmake_args+=" -DFERRY_BENCH_GIT_SHA=$git_sha -DFERRY_BENCH_GIT_DIRTY=$([ "${git_dirty:-0}" = 0 ] && echo 0 || echo 1)"
fi
export LD_LIBRARY_PATH=/opt/ferry-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# PCRE2 is found through pkg-config: its .pc files name /usr, so the sysroot points them at the unpacked copy (carry
# libpcre2-dev and its libraries in .devdeps: fetch-deps.sh .devdeps libpcre2-dev libpcre2-8-0 libpcre2-16-0
# libpcre2-32-0 libpcre2-posix3).
export PKG_CONFIG_PATH=/opt/ferry-deps/usr/lib/x86_64-linux-gnu/pkgconfig PKG_CONFIG_SYSROOT_DIR=/opt/ferry-deps
export PATH=$PATH:/usr/local/cuda/bin
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
start=$(date +%s)
# shellcheck disable=SC2086
if ! cmake -S . -B build-device "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFERRY_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 $cmake_args ${FERRY_CMAKE_ARGS:-} >"$out/configure.log" 2>&1; then
  tail -40 "$out/configure.log"
  fail "configure: FAILED (configure.log)"
  exit 1
fi
if ! cmake --build build-device -j16 >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -60
  fail "build: FAILED (build.log)"
  exit 1
fi
note "build: ok ($(($(date +%s) - start)) s)"

# This machine has a GPU: a GPU test that skips means a broken driver or build, so it fails (FERRY_REQUIRE_GPU).
export FERRY_REQUIRE_GPU=1

# The "The following tests FAILED:" and "did not run:" lists of a CTest log (each header and its indented lines).
ctest_lists() {
  awk '/^The following tests (FAILED|did not run):/ { p = 1; print; next } p && /^[ \t]/ { print; next } { p = 0 }' "$1"
}

# Checks one CTest log: status, the percentage line, the failing tests; a skipped GPU test counts as a failure here.
report_ctest() {
  local log=$1 code=$2 label=$3
  local line
  line=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1)
  local skipped_gpu
  skipped_gpu=$(ctest_lists "$log" | awk '/^The following/ { s = /did not run/; next } s' | grep -E 'cuda|gpu')
  if [ "$code" -eq 0 ] && [ -z "$skipped_gpu" ]; then
    note "$label: ok (${line:-no summary line})"
  else
    fail "$label: FAILED (ctest status $code; ${line:-no summary line})"
    ctest_lists "$log" | tee -a "$summary"
    [ -n "$skipped_gpu" ] && note "(a GPU test that did not run on the GPU machine is a failure)"
  fi
}

gpu_test_names() {
  ctest --test-dir build-device -N -R "$regex" 2>/dev/null | sed -n 's/^ *Test *#[0-9]*: *\([^ ]*\).*/\1/p' |
    grep -E 'cuda|gpu'
}

if [ "$regex" = NONE ]; then
  note "tests: not run (TEST_REGEX NONE)"
elif [ -n "$repeat" ]; then
  # N runs in a row; each run's log is kept only while it passes, the first failing one is kept and shown.
  for ((i = 1; i <= repeat; i++)); do
    log=$out/repeat-$i.log
    ctest --test-dir build-device -j4 -R "$regex" --no-tests=error --output-on-failure --timeout 600 >"$log" 2>&1
    code=$?
    if [ "$code" -ne 0 ]; then
      tail -80 "$log"
      report_ctest "$log" "$code" "repeat: run $i of $repeat (-j4, -R '$regex', log repeat-$i.log)"
      break
    fi
    rm -f "$log"
    echo "repeat: run $i of $repeat passed"
  done
  [ "$status" -eq 0 ] && note "repeat: all $repeat runs passed (ctest -j4 -R '$regex')"
elif [ -n "$sanitize" ]; then
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  [ -x "$sanitizer" ] || { fail "sanitize: FAILED (no compute-sanitizer at $sanitizer)"; exit 1; }
  mapfile -t tests < <(gpu_test_names)
  [ "${#tests[@]}" -gt 0 ] || { fail "sanitize: FAILED (no GPU test matches '$regex')"; exit 1; }
  mkdir -p "$out/sanitize"
  # racecheck looks at ferry's own kernels only: cuBLAS's closed kernels (nvjet_*, TMA pipelines) report shared-memory
  # hazards it cannot judge. initcheck (below) must watch them too, or what they write looks unwritten.
  "$sanitizer" --version | tail -1 | tee "$out/sanitize/version.txt"
  "$sanitizer" --help >"$out/sanitize/help.txt" 2>&1
  grep -i -A4 -E -- '--(kernel|filter)' "$out/sanitize/help.txt" | head -40
  # Read from the saved help: `--help | grep -q` under pipefail fails when grep stops reading early (SIGPIPE), which
  # once left the filter out without a word.
  own_kernels=()
  if grep -q -- '--kernel-name ' "$out/sanitize/help.txt"; then
    own_kernels=(--kernel-name kns=ferry)
  elif grep -q -- '--filter ' "$out/sanitize/help.txt"; then
    own_kernels=(--filter kns=ferry)
  else
    note "sanitize: this compute-sanitizer has no kernel filter: racecheck and initcheck also check cuBLAS's kernels"
  fi
  # The error reports of an initcheck log whose first frame is one of ferry's kernels (namespace ferry::).
  initcheck_ferry_errors() {
    awk '/^========= [A-Z][a-z]+.* (memory|access)/ { pending = 1; next }
         pending && /^=========     at / { if ($0 ~ /ferry::/) n++; pending = 0 }
         END { print n + 0 }' "$1"
  }
  # The hazard reports of a racecheck log with an access in one of ferry's kernels: a report is its "Error:" or
  # "Warning:" line and the lines up to the next one (the second access, the hazard count).
  racecheck_ferry_hazards() {
    awk '/^========= (Error|Warning):/ { if (hit) n++; hit = 0; inside = 1 }
         /^========= (RACECHECK|ERROR) SUMMARY/ { inside = 0 }
         inside && /ferry::/ { hit = 1 }
         END { if (hit) n++; print n + 0 }' "$1"
  }
  sanitize_one() {
    local t=$1 tool=$2 exe=build-device/tests/$1 res=$out/sanitize/$1.$2.result
    local log=$out/sanitize/$t.$tool.log t0 code secs errors why filter=() limit=() ours cases=() judged=
    t0=$(date +%s)
    case "$tool" in
      racecheck)
        filter=("${own_kernels[@]}")
        # With the kernel filter, racecheck fails inside the tool ("failed to handle a hardware exception", then an
        # illegal address) once cuBLAS's GEMMs have run (H100, 2026-12-05; the one test without them was clean): the
        # kernel tests' filtered runs leave out their cases that run a GEMM (the GEMM, chunked-attention and
        # scratch-sizing cases). The stack tests' prompt steps all run GEMMs, so they run unfiltered, as initcheck
        # does (an earlier session's runs, one test at a time, finished and reported hazards inside cuBLAS's
        # kernels): only hazards with an access in one of ferry's kernels count (racecheck_ferry_hazards).
        case "$t" in
          test_dequant_cuda) ;;
          test_matmul_cuda) cases=("-tce=*dequant_gemm*,*GEMM above*,*other paths*") ;;
          test_ops_cuda) cases=("-tce=*chunked*,*both paths*,*scratch sizing*") ;;
          *)
            filter=()
            judged=ferry
            ;;
        esac
        ;;
      # initcheck watches every kernel, so that what cuBLAS's GEMMs write counts as written: with the kernel filter
      # (H100, 2026-12-05) ferry's kernels reading a GEMM's output were reported (GELU, RoPE). Even unfiltered it
      # does not see cuBLAS's stores on Hopper, so ferry marks the GEMMs' outputs (and cuBLASLt's workspace) as
      # written through NVTX (kernels/cuda/tool_marks.hpp). Only errors in ferry's own kernels count
      # (initcheck_ferry_errors); cuBLAS's are listed, not judged.
      initcheck) limit=(--print-limit 200000) ;;
    esac
    FERRY_TEST_QUICK=1 FERRY_UNDER_SANITIZER=1 timeout "${FERRY_SANITIZE_TIMEOUT:-300}" "$sanitizer" --tool "$tool" --error-exitcode 1 \
      "${filter[@]}" "${limit[@]}" "$exe" "${cases[@]}" >"$log" 2>&1
    code=$?
    secs=$(($(date +%s) - t0))
    errors=$(grep -E '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "$log" | tail -1 | sed 's/^========= //')
    if [ "$judged" = ferry ] && [ "$code" -ne 124 ] && grep -q '^========= RACECHECK SUMMARY' "$log"; then
      ours=$(racecheck_ferry_hazards "$log")
      if [ "$ours" -eq 0 ] && ! grep -q 'Internal Sanitizer Error' "$log" && grep -q 'Status: SUCCESS' "$log"; then
        [ "$code" -ne 0 ] && errors="$errors, none in ferry's kernels"
        code=0
      else
        errors="$errors; $ours with an access in ferry's kernels"
        code=1
      fi
    fi
    if [ "$tool" = initcheck ] && [ "$code" -ne 124 ] && grep -q '^========= ERROR SUMMARY' "$log"; then
      ours=$(initcheck_ferry_errors "$log")
      if [ "$ours" -eq 0 ] && ! grep -q 'errors were not printed' "$log" && ! grep -q 'Internal Sanitizer Error' "$log" &&
        grep -q 'Status: SUCCESS' "$log"; then
        [ "$code" -ne 0 ] && errors="$errors, none in ferry's kernels"
        code=0
      else
        errors="$errors; $ours in ferry's kernels"
        code=1
      fi
    fi
    if [ "$code" -eq 0 ]; then
      echo "ok sanitize $t $tool: ok ($secs s; ${errors:-no summary}${filter:+; kernels: ${filter[*]}})" >"$res"
    else
      why="exit $code"
      [ "$code" -eq 124 ] && why="timed out after ${FERRY_SANITIZE_TIMEOUT:-300} s"
      echo "FAILED sanitize $t $tool: FAILED ($why, $secs s; ${errors:-no summary}; log sanitize/$t.$tool.log)" >"$res"
    fi
  }
  # One (test, tool) run per job, FERRY_SANITIZE_JOBS at once (default 6): run one after another they take longer
  # than a device session; each writes its line to its own file, gathered in order afterwards.
  jobs_max=${FERRY_SANITIZE_JOBS:-6}
  for t in "${tests[@]}"; do
    [ -x "build-device/tests/$t" ] || { fail "sanitize $t: FAILED (no executable build-device/tests/$t)"; continue; }
    for tool in ${FERRY_SANITIZE_TOOLS:-memcheck racecheck initcheck}; do
      while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
      sanitize_one "$t" "$tool" &
    done
  done
  wait
  for t in "${tests[@]}"; do
    for tool in ${FERRY_SANITIZE_TOOLS:-memcheck racecheck initcheck}; do
      res=$out/sanitize/$t.$tool.result
      [ -f "$res" ] || continue
      line=$(cat "$res")
      if [[ $line == ok* ]]; then note "${line#ok }"; else
        fail "${line#FAILED }"
        tail -40 "$out/sanitize/$t.$tool.log"
      fi
    done
  done
else
  ctest --test-dir build-device --no-tests=error --output-on-failure -R "$regex" --timeout 600 >"$out/ctest.log" 2>&1
  code=$?
  tail -40 "$out/ctest.log"
  report_ctest "$out/ctest.log" "$code" "tests (-R '$regex', ctest.log)"
fi
[ "$status" -eq 0 ] || echo "TESTS FAILED: any benchmark below comes from a failing build"

if [ "${#benches[@]}" -eq 1 ] && [ "${benches[0]}" = all ]; then
  mapfile -t benches < <(cd build-device/bench 2>/dev/null && ls bench_* 2>/dev/null)
fi
for b in "${benches[@]}"; do
  exe=build-device/bench/$b
  [ -x "$exe" ] || { fail "bench $b: FAILED (no such executable)"; continue; }
  echo "== $b"
  "$exe" -o "$out/$b.json" 2>&1 | tee "$out/$b.md"
  code=${PIPESTATUS[0]}
  if [ "$code" -eq 0 ]; then note "bench $b: ok ($b.md, $b.json)"; else fail "bench $b: FAILED (status $code; $b.md)"; fi
done
# Further commands (FERRY_EXTRA), run with RESULTS set to the folder that is packed into results.tgz.
if [ -n "${FERRY_EXTRA:-}" ]; then
  RESULTS=$out bash -c "$FERRY_EXTRA"
  code=$?
  if [ "$code" -eq 0 ]; then note "extra: ok"; else fail "extra: FAILED (status $code)"; fi
fi
if [ "$status" -eq 0 ]; then note "overall: ok"; else note "overall: FAILED"; fi
exit "$status"
