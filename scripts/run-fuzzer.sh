#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (libFuzzer + ASan + UBSan) and fuzzes for a bounded time. Exits non-zero on
# a finding (crash, sanitizer report, leak, timeout, out-of-memory); the reproducer is left in
# BUILD_DIR/fuzz-artifacts/TARGET/.
#
#   scripts/run-fuzzer.sh [SECONDS [TARGET]]
#
# SECONDS (default 60) is the whole budget: with no TARGET the three targets share it equally, so CI's
# `scripts/run-fuzzer.sh 60` still fuzzes for about 60 s in all. TARGET is one of
#   gguf_reader   the GGUF parser and validator, and a tokenizer built from what parses (seeds: valid GGUF files)
#   sampler       the sampler and generate() on hostile logits and sampler settings
#   cli_args      the `ferry` command line's parsing, every subcommand (builds the whole runtime once, uninstrumented)
# (the fuzz_ prefix may be given too).
#
# Environment: FERRY_FUZZ_BUILD_DIR (default build-fuzz), FERRY_FUZZ_JOBS (build parallelism, default 2).
set -euo pipefail

usage() {
  echo "usage: $0 [SECONDS [gguf_reader|sampler|cli_args]]  (SECONDS: a positive whole number, default 60)" >&2
  exit 2
}

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then usage; fi
[[ $# -le 2 ]] || usage
all_targets=(fuzz_gguf_reader fuzz_sampler fuzz_cli_args)
if [[ $# -eq 2 ]]; then
  target="fuzz_${2#fuzz_}"
  case "$target" in
    fuzz_gguf_reader | fuzz_sampler | fuzz_cli_args) targets=("$target") ;;
    *) echo "$0: unknown target '$2'" >&2; usage ;;
  esac
else
  targets=("${all_targets[@]}")
fi
# Each target gets an equal share of the budget, at least one second.
share=$((seconds / ${#targets[@]}))
[[ $share -ge 1 ]] || share=1

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FERRY_FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${FERRY_FUZZ_JOBS:-2}"

CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFERRY_FUZZ=ON -DFERRY_CUDA=OFF -DFERRY_BUILD_TESTS=OFF -DFERRY_BUILD_BENCH=OFF >/dev/null
build_targets=("${targets[@]}")
[[ " ${targets[*]} " == *" fuzz_gguf_reader "* ]] && build_targets+=(make_seed_corpus)
cmake --build "$build" --target "${build_targets[@]}" -j "$jobs"

# Seeds are regenerated every time; the corpus grows across runs.
argv_seed() {  # the arguments, NUL-separated (no trailing NUL)
  printf '%s\0' "$@" | head -c -1
}
write_seeds() {
  local target="$1" seeds="$2"
  case "$target" in
    fuzz_gguf_reader)
      "$build/fuzz/make_seed_corpus" "$seeds"
      ;;
    fuzz_cli_args)  # command lines as the README gives them
      argv_seed info model.gguf --json >"$seeds/info"
      argv_seed dump model.gguf token_embd.weight -o out.f32 >"$seeds/dump"
      argv_seed make-model --preset tiny --type q4_k_m --seed 7 -o m.gguf >"$seeds/make_model"
      argv_seed run model.gguf -p Hello -n 16 --temp 0.7 --top-k 40 --top-p 0.9 --vram 7.5G >"$seeds/run"
      argv_seed run --policy cpu-all --prefetch 2 --ctx 512 --trace t.json >"$seeds/run_policy"
      ;;
    fuzz_sampler)  # see fuzz_sampler.cpp for the layout
      # generate on: temperature 1, top-p 0.95, top-k 40, seed 7, 264 tokens, context 30, 16 tokens, "hi", 5 logits
      printf '\x01\x02\0\0\0\0\x04\0\0\0\0\x28\0\0\0\x07\x08\x01\x20\x10\0\x02hi\xa0\xb0\xc0\x90\x80' \
        >"$seeds/ordinary"
      # greedy over one token whose logits are NaN, +Inf, -Inf
      printf '\x01\0\0\0\0\0\x02\0\0\0\0\0\0\0\0\0\x01\0\x08\x05\0\0\0\x01\x02' >"$seeds/hostile"
      ;;
  esac
}

options_for() {
  # -max_len: longer inputs only slow the search. -rss_limit_mb/-malloc_limit_mb make an allocation the code should
  # have refused (larger than the input warrants) a finding. -timeout: one input taking over 10 s is a loop that the
  # input does not bound.
  case "$1" in
    fuzz_gguf_reader) echo "-max_len=8192 -malloc_limit_mb=256 -dict=$root/fuzz/gguf.dict" ;;
    fuzz_cli_args) echo "-max_len=1024 -malloc_limit_mb=256 -dict=$root/fuzz/cli.dict" ;;
    fuzz_sampler) echo "-max_len=4096 -malloc_limit_mb=256" ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  fuzzer="$build/fuzz/$target"
  seeds="$build/fuzz-seeds/$target"
  corpus="$build/fuzz-corpus/$target"
  artifacts="$build/fuzz-artifacts/$target"
  rm -rf "$seeds" "$artifacts"
  mkdir -p "$seeds" "$corpus" "$artifacts"
  write_seeds "$target" "$seeds"
  echo "$target: ${share} s from $(find "$seeds" -type f | wc -l) seeds" \
    "and $(find "$corpus" -type f | wc -l) corpus files"
  status=0
  # shellcheck disable=SC2046  # the options are words
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$fuzzer" "$corpus" "$seeds" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 \
    $(options_for "$target") -artifact_prefix="$artifacts/" -print_final_stats=1 || status=$?
  if [[ $status -ne 0 ]] || [[ -n "$(ls -A "$artifacts")" ]]; then
    echo "$target: FINDING (exit status $status); reproducers in $artifacts:" >&2
    ls -l "$artifacts" >&2
    echo "replay one with: $fuzzer $artifacts/<file>" >&2
    failed+=("$target")
  else
    echo "$target: no findings in ${share} s"
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "findings in: ${failed[*]}" >&2
  exit 1
fi
