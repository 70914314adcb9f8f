#!/bin/bash
# The open issues' H200 figures in one call, after scripts/device-run.sh has built build-device (nothing else may run
# on the machine meanwhile): each PART runs under its own time limit and writes OUTDIR/PART.md (+ .json) and a line
# of OUTDIR/figures-summary.txt.
#   FERRY_EXTRA='bash scripts/device-figures.sh "$RESULTS/figures" gemv flux decode llama-13b' \
#     bash scripts/device-run.sh 'cuda|gpu'
# PART: gemv (bench_kernels_cuda --gemv-only: staged vs direct GEMV per type and shape), flux (bench_flux at no
# budget, 8, 4 and 2 GiB against the F16 floor), decode (8B Q4_0 and Q4_K fully resident, staged vs direct GEMV),
# llama-13b (13B Q4_0 at 8, 7 and 4 GiB: every GPU policy and auto, with `ferry plan`'s prediction for auto),
# calibrate (ferry calibrate --force). Models are made once under FERRY_BENCH_MODELS (/tmp/ferry-bench-models).
set -uo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OUTDIR PART..." >&2
  exit 2
fi
out=$(realpath -m "$1")
shift
cd "$(dirname "$0")/.." || exit 2
b=build-device/bench
ferry=build-device/ferry
models=${FERRY_BENCH_MODELS:-/tmp/ferry-bench-models}
mkdir -p "$out" "$models"
summary=$out/figures-summary.txt
status=0
note() { echo "$*" | tee -a "$summary"; }
# run NAME LIMIT_S COMMAND...: stdout to NAME.md, stderr to NAME.log.
run() {
  local name=$1 limit=$2
  shift 2
  local t0
  t0=$(date +%s)
  timeout "$limit" "$@" >"$out/$name.md" 2>"$out/$name.log"
  local code=$?
  if [ "$code" -eq 0 ]; then
    note "$name: ok ($(($(date +%s) - t0)) s)"
  else
    status=1
    note "$name: FAILED (status $code after $(($(date +%s) - t0)) s; $name.log)"
    tail -5 "$out/$name.log"
  fi
}
model() {  # model PRESET TYPE: the path of a made (cached) synthetic model
  local path=$models/$1-$2.gguf
  [ -f "$path" ] || "$ferry" make-model --preset "$1" --type "$2" -o "$path" >/dev/null || return 1
  echo "$path"
}

for part in "$@"; do
  case "$part" in
    gemv) run gemv 120 "$b/bench_kernels_cuda" --gemv-only -o "$out/gemv.json" ;;
    flux)
      run flux 300 "$b/bench_flux" --preset flux-1-dev --type q4_0 --image 1024x1024 --txt 512 \
        --case none:resident-stream --case 8GiB:resident-stream --case 4GiB:resident-stream \
        --case 2GiB:resident-stream --case 2GiB:auto --case 8GiB:resident-stream:fp32 --case 2GiB:resident-stream:fp32 -o "$out/flux.json"
      ;;
    decode)
      for type in ${FERRY_DECODE_TYPES:-q4_0 q4_k}; do
        for path in staged direct; do
          run "decode-8b-$type-$path" 150 env FERRY_GEMV_PATH=$path "$b/bench_llama" --preset llama-3-8b \
            --type $type --case 40GiB:resident-first:512:64 -o "$out/decode-8b-$type-$path.json"
        done
      done
      ;;
    llama-13b)
      m=$(model llama-2-13b q4_0) || { note "llama-13b: FAILED (make-model)"; status=1; continue; }
      for vram in 8GiB 7GiB 4GiB; do
        run "plan-13b-$vram" 60 "$ferry" plan "$m" --vram "$vram" --policy auto --ctx 512 --prompt 512 --gen 32
      done
      run bench-13b 300 "$ferry" bench "$m" --vram 8GiB,7GiB,4GiB --policy auto,resident-stream -p 512 -n 32 -r 2 \
        --out-dir "$out/bench-13b"
      ;;
    calibrate) run calibrate 120 "$ferry" calibrate --force ;;
    *)
      note "$part: unknown part (gemv, flux, decode, llama-13b, calibrate)"
      status=1
      ;;
  esac
done
exit "$status"
