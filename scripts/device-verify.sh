#!/bin/bash
# The GPU suite's reliability check in one call on the GPU machine (the device tool's 10-minute limit): build, every
# test once, the GPU tests 20 times in a row under `ctest -j4`, then compute-sanitizer over every GPU test. Each part
# is scripts/device-run.sh in one of its modes. What comes back: $OUT/summary.txt (every part's summary, also printed)
# and $OUT/verify.tgz (each part's console log, summary and results).
#   bash scripts/device-verify.sh [REPEATS] [SANITIZER_SECONDS] [TOOLS] [bench]
# SANITIZER_SECONDS bounds the sanitizer part as a whole (default 300); what it did not reach is named in the summary.
# TOOLS: the compute-sanitizer tools, default "memcheck racecheck initcheck synccheck". With "bench" last, the offload
# and llama benchmarks of the README's figures follow (bench_offload; bench_llama on Llama-3-8B Q4_K and
# Llama-2-13B Q4_0 shapes), with nothing else running.
set -uo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-20}
sanitizer_seconds=${2:-300}
tools=${3:-memcheck racecheck initcheck synccheck}
bench=${4:-}
final=${OUT:-$PWD/out}
mkdir -p "$final"
root=$(mktemp -d)
status=0
# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
  for d in "$root"/*/; do
    echo "== $(basename "$d")"
    sed -n '/^== summary/,$p' "$d/console.log" | tail -n +2
  done >"$final/summary.txt"
  cat "$final/summary.txt"
  tar czf "$final/verify.tgz" -C "$root" .
}
trap finish EXIT
part() {
  local name=$1
  shift
  mkdir -p "$root/$name"
  OUT=$root/$name "$@" >"$root/$name/console.log" 2>&1 || status=1
  echo "$name: done"
}
part all bash scripts/device-run.sh
part repeat env FERRY_REPEAT="$repeats" bash scripts/device-run.sh
deadline=$(($(date +%s) + sanitizer_seconds))
for tool in $tools; do
  left=$((deadline - $(date +%s)))
  if [ "$left" -le 10 ]; then
    mkdir -p "$root/sanitize-$tool"
    echo "== summary
sanitize $tool: NOT RUN (the ${sanitizer_seconds} s for sanitizers were used up)" >"$root/sanitize-$tool/console.log"
    status=1
    continue
  fi
  part "sanitize-$tool" env FERRY_SANITIZE=1 FERRY_SANITIZE_TOOLS="$tool" FERRY_SANITIZE_TIMEOUT="$left" \
    timeout "$left" bash scripts/device-run.sh
done
if [ "$bench" = bench ]; then
  # shellcheck disable=SC2016  # expanded by device-run.sh's shell
  part bench env FERRY_EXTRA='
    b=build-device/bench
    $b/bench_llama --preset llama-3-8b --type q4_k --case 8GiB:resident-first:512:64 \
      -o "$RESULTS/bench_llama_8b.json" 2>&1 | tee "$RESULTS/bench_llama_8b.md"
    $b/bench_llama --preset llama-2-13b --type q4_0 --case 8GiB:resident-stream:512:32 \
      --case 4GiB:resident-stream:512:16 -o "$RESULTS/bench_llama_13b.json" 2>&1 | tee "$RESULTS/bench_llama_13b.md"' \
    bash scripts/device-run.sh NONE bench_offload
fi
exit "$status"
