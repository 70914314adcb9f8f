#!/bin/bash
# The figures of the closing notes and the README, on the GPU machine, in two calls of under 10 minutes each (the
# device tool's limit); results land in $OUT/results.tgz. Run from the repository root there, .devdeps carried along:
#   bash scripts/device-report.sh kernels   build, every test, the kernel, attention and CPU benchmarks
#   bash scripts/device-report.sh models    the offload engine and the llama models (builds again on a fresh machine)
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  kernels)
    bash scripts/device-run.sh . bench_kernels_cuda bench_attention_cuda bench_cpu_gemv bench_dequant_cpu
    ;;
  models)
    # bench_llama makes each model once (tens of seconds on 16 cores), then times every case on it.
    export FERRY_EXTRA='
      b=build-device/bench
      $b/bench_llama --preset llama-3-8b --type q4_k --case 8GiB:resident-first:512:64 --case 4GiB:resident-stream:512:32 \
        -o "$RESULTS/bench_llama_8b.json" 2>&1 | tee "$RESULTS/bench_llama_8b.md"
      $b/bench_llama --preset llama-2-13b --type q4_0 --case 8GiB:resident-first:512:32 \
        --case 8GiB:resident-stream:512:32 --case 4GiB:resident-stream:512:16 --case 4GiB:resident-first:16:16 \
        -o "$RESULTS/bench_llama_13b.json" 2>&1 | tee "$RESULTS/bench_llama_13b.md"'
    bash scripts/device-run.sh NONE bench_offload
    ;;
  *)
    echo "usage: $0 kernels|models" >&2
    exit 2
    ;;
esac
