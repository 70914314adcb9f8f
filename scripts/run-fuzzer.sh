#!/usr/bin/env bash
# Builds the GGUF reader fuzzer with clang (libFuzzer + ASan + UBSan), writes a seed corpus of valid GGUF files and
# fuzzes for a bounded time. Exits non-zero on a finding (crash, sanitizer report, leak, timeout, out-of-memory); the
# reproducer is left in BUILD_DIR/fuzz-artifacts/.
#
#   scripts/run-fuzzer.sh [SECONDS]        default 60
#
# Environment: FERRY_FUZZ_BUILD_DIR (default build-fuzz), FERRY_FUZZ_JOBS (build parallelism, default 2).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "usage: $0 [SECONDS]  (a positive whole number of seconds, default 60)" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FERRY_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${FERRY_FUZZ_JOBS:-2}"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFERRY_FUZZ=ON -DFERRY_CUDA=OFF -DFERRY_BUILD_TESTS=OFF -DFERRY_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" --target fuzz_gguf_reader make_seed_corpus -j "$jobs"

fuzzer="$build/fuzz/fuzz_gguf_reader"
seeds="$build/fuzz-seeds"
corpus="$build/fuzz-corpus"      # grows across runs; the seeds are regenerated every time
artifacts="$build/fuzz-artifacts"
rm -rf "$seeds" "$artifacts"
mkdir -p "$seeds" "$corpus" "$artifacts"
"$build/fuzz/make_seed_corpus" "$seeds"
echo "seed corpus: $(ls "$seeds" | wc -l) files in $seeds"

# -max_len: the seeds are well under 8 KiB; longer inputs only slow the search. -rss_limit_mb/-malloc_limit_mb make
# an allocation the reader should have refused (larger than the file) a finding. -timeout: one input taking over 10 s
# means a loop that is not bounded by the input size.
status=0
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$fuzzer" "$corpus" "$seeds" \
  -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
  -dict="$root/fuzz/gguf.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 || status=$?

if [[ $status -ne 0 ]] || [[ -n "$(ls -A "$artifacts")" ]]; then
  echo "fuzz_gguf_reader: FINDING (exit status $status); reproducers in $artifacts:" >&2
  ls -l "$artifacts" >&2
  echo "replay one with: $fuzzer $artifacts/<file>" >&2
  exit 1
fi
echo "fuzz_gguf_reader: no findings in ${seconds} s"
