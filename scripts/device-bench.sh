#!/bin/bash
# `ferry bench` on the workloads of ../shared/docs/measuring.md, on a GPU machine: markdown, JSON and SVG of every run
# into OUTDIR/<run>/ (bench.md, bench.json, bench.csv, bench-phases.svg, bench-timeline.svg), then OUTDIR/results.md
# from all of them (scripts/results-md.py; copy it to docs/results.md with the pictures beside it).
#   bash scripts/device-bench.sh OUTDIR [WORKLOAD...]
# WORKLOAD: smollm2, llama-8b, llama-13b, llama-13b-link12, flux, flux-cpu (default: all but the flux ones; smoke: a
# small synthetic llama model and the tiny Flux preset, to try the script on any machine). Each runs the budgets 8, 4
# and 2 GiB with every policy; arms bound by the CPU (resident-first below a fitting budget, cpu-all) run with a short
# prompt in a run of their own, so one slow arm does not eat the machine's time. llama-13b-link12 is llama-13b's GPU
# arms with host-to-device copies paced to 12 GB/s: a PCIe 4.0 x8 link, simulated (say so next to its figures).
# flux: a synthetic flux-1-dev Q4_0 file (made once, ~6.7 GB), seconds per denoising step of a 1024x1024 image with
# 512 text tokens at 8, 4 and 2 GiB with resident-stream, stream-all and auto, then the same with the link paced to
# 12 GB/s (flux-1-dev-q4_0-link12, simulated); 3 repetitions each (~0.4 s a step on an H200: about 2 minutes in all).
# flux-cpu: its CPU-bound arms (resident-first at 8, 4 and 2 GiB; cpu-all), one repetition each: ~10 minutes.
# smollm2 includes its GPU arms over the simulated 12 GB/s link (smollm2-135m-q4_1-link12).
#
# Needs a built ferry: $FERRY, else build-device/ferry (scripts/device-run.sh builds there), else build/ferry. With
# device-run.sh, one call does both:
#   FERRY_EXTRA='bash scripts/device-bench.sh "$RESULTS/bench" llama-13b' bash scripts/device-run.sh NONE
# Environment: FERRY_BENCH_MODELS (where the synthetic models are made, once; default /tmp/ferry-bench-models),
# FERRY_SMOLLM2_GGUF (the real SmolLM2-135M-Instruct Q4_1 file; else ferry's cache; the GPU machine has no network, so
# without either smollm2 is skipped, never silently replaced by the synthetic model), FERRY_BENCH_REPS (3),
# FERRY_BENCH_GEN (tokens of tg, 32), FERRY_BENCH_BUDGET_S (runs not started after this many seconds are skipped,
# 480), FERRY_BENCH_RUN_TIMEOUT (seconds per run, 300). Exit status: non-zero when a run failed or was skipped.
set -uo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [smollm2|llama-8b|llama-13b|llama-13b-link12|flux|smoke ...]" >&2
  exit 2
fi
outdir=$(realpath -m "$1")
shift
[ -n "${FERRY:-}" ] && FERRY=$(realpath -m "$FERRY")
cd "$(dirname "$0")/.." || exit 2
workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(smollm2 llama-8b llama-13b llama-13b-link12)
ferry=${FERRY:-}
for candidate in build-device/ferry build/ferry; do
  [ -n "$ferry" ] || { [ -x "$candidate" ] && ferry=$candidate; }
done
if [ -z "$ferry" ] || [ ! -x "$ferry" ]; then
  echo "no ferry binary (set FERRY, or build first)" >&2
  exit 2
fi
models=${FERRY_BENCH_MODELS:-/tmp/ferry-bench-models}
reps=${FERRY_BENCH_REPS:-3}
gen=${FERRY_BENCH_GEN:-32}
budget_s=${FERRY_BENCH_BUDGET_S:-480}
run_timeout=${FERRY_BENCH_RUN_TIMEOUT:-300}
mkdir -p "$outdir" "$models"
summary=$outdir/bench-summary.txt
: >"$summary"
status=0
start=$(date +%s)
note() { echo "$*" | tee -a "$summary"; }

# model PRESET TYPE [ARCH]: the path of a synthetic model of that shape (ARCH llama unless given), made once.
model() {
  local path=$models/$1-$2.gguf
  if [ ! -f "$path" ]; then
    echo "== making $1 $2 (once)" >&2
    "$ferry" make-model --arch "${3:-llama}" --preset "$1" --type "$2" --seed 1 -o "$path" >&2 || return 1
  fi
  echo "$path"
}

# bench NAME MODEL ARGS...: one ferry bench run into $outdir/NAME.
bench() {
  local name=$1 model_path=$2
  shift 2
  local elapsed=$(($(date +%s) - start))
  if [ "$elapsed" -ge "$budget_s" ]; then
    note "$name: SKIPPED (${elapsed} s spent of FERRY_BENCH_BUDGET_S=$budget_s)"
    status=1
    return
  fi
  echo "== $name: ferry bench $(basename "$model_path") $*"
  local t0
  t0=$(date +%s)
  timeout "$run_timeout" "$ferry" bench "$model_path" --timeline --out-dir "$outdir/$name" "$@" 2>"$outdir/$name.log"
  local code=$?
  if [ "$code" -eq 0 ]; then
    note "$name: ok ($(($(date +%s) - t0)) s)"
  else
    status=1
    if [ "$code" -eq 124 ]; then
      note "$name: FAILED (timed out after $run_timeout s; $name.log)"
    else
      note "$name: FAILED (status $code; $name.log)"
    fi
    tail -5 "$outdir/$name.log"
  fi
}

budgets=8GiB,4GiB,2GiB
gpu_policies=resident-stream,stream-all
flux_policies=resident-stream,stream-all,auto
short=(-p 32 -n 16 -r 2)  # CPU-bound arms: a prefill of 512 tokens on the CPU takes minutes for the big models

for w in "${workloads[@]}"; do
  case "$w" in
    smollm2)
      real=${FERRY_SMOLLM2_GGUF:-${FERRY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}/SmolLM2-135M-Instruct.Q4_1.gguf}
      if [ -f "$real" ]; then
        bench smollm2-135m-q4_1 "$real" --vram "$budgets" --policy resident-first,resident-stream,stream-all,cpu-all \
          -p 512 -n 128 -r "$((reps > 5 ? reps : 5))"
        # The whole model fits every budget, so only stream-all moves weights over the (simulated) link.
        bench smollm2-135m-q4_1-link12 "$real" --vram "$budgets" --policy "$gpu_policies" -p 512 -n 128 -r "$reps" \
          --link-gbps 12
      else
        note "smollm2: SKIPPED (no $real; set FERRY_SMOLLM2_GGUF to the real model's file)"
        status=1
      fi
      ;;
    llama-8b)
      for type in q4_0 q4_k; do
        m=$(model llama-3-8b "$type") || { note "llama-8b $type: FAILED (make-model)"; status=1; continue; }
        bench "llama-8b-$type" "$m" --vram "$budgets" --policy "resident-first,$gpu_policies" -p 512 -n "$gen" \
          -r "$reps"
        bench "llama-8b-$type-cpu" "$m" --vram 8GiB --policy cpu-all "${short[@]}"
      done
      ;;
    llama-13b)
      m=$(model llama-2-13b q4_0) || { note "llama-13b: FAILED (make-model)"; status=1; continue; }
      bench llama-13b-q4_0 "$m" --vram "$budgets" --policy "$gpu_policies,auto" -p 512 -n "$gen" -r "$reps"
      bench llama-13b-q4_0-cpu "$m" --vram "$budgets" --policy resident-first "${short[@]}"
      bench llama-13b-q4_0-cpu-all "$m" --vram 8GiB --policy cpu-all "${short[@]}"
      ;;
    llama-13b-link12)
      m=$(model llama-2-13b q4_0) || { note "llama-13b-link12: FAILED (make-model)"; status=1; continue; }
      bench llama-13b-q4_0-link12 "$m" --vram "$budgets" --policy "$gpu_policies" -p 512 -n 16 -r 2 --link-gbps 12
      ;;
    smoke)  # the script itself, on any machine: a small synthetic model, every policy, the simulated link
      m=$(model small q4_k) || { note "smoke: FAILED (make-model)"; status=1; continue; }
      bench smoke-small-q4_k "$m" --vram "$budgets" -p 64 -n 8 -r 2
      bench smoke-small-q4_k-link12 "$m" --vram "$budgets" --policy "$gpu_policies,cpu-all" -p 64 -n 8 -r 2 \
        --link-gbps 12
      m=$(model flux-tiny q4_0 flux) || { note "smoke flux: FAILED (make-model)"; status=1; continue; }
      bench smoke-flux-tiny-q4_0 "$m" --vram "$budgets" --policy "$flux_policies,cpu-all" --image 256x256 --txt 64 \
        -r 2
      ;;
    flux)
      m=$(model flux-1-dev q4_0 flux) || { note "flux: FAILED (make-model)"; status=1; continue; }
      bench flux-1-dev-q4_0 "$m" --vram "$budgets" --policy "$flux_policies" --image 1024x1024 --txt 512 -r "$reps"
      bench flux-1-dev-q4_0-link12 "$m" --vram "$budgets" --policy "$flux_policies" --image 1024x1024 --txt 512 \
        -r "$reps" --link-gbps 12
      ;;
    flux-cpu)  # the CPU arms of the flux workload: minutes per step (~1e14 FLOP), so one repetition, on their own
      m=$(model flux-1-dev q4_0 flux) || { note "flux-cpu: FAILED (make-model)"; status=1; continue; }
      bench flux-1-dev-q4_0-cpu "$m" --vram "$budgets" --policy resident-first --image 1024x1024 --txt 512 -r 1
      bench flux-1-dev-q4_0-cpu-all "$m" --vram 8GiB --policy cpu-all --image 1024x1024 --txt 512 -r 1
      ;;
    *)
      note "$w: unknown workload (smollm2, llama-8b, llama-13b, llama-13b-link12, flux, flux-cpu, smoke)"
      status=1
      ;;
  esac
done

mapfile -t reports < <(ls "$outdir"/*/bench.json 2>/dev/null)
if [ "${#reports[@]}" -gt 0 ]; then
  if python3 scripts/results-md.py -o "$outdir/results.md" "${reports[@]}"; then
    note "results.md: ok (${#reports[@]} reports)"
  else
    note "results.md: FAILED"
    status=1
  fi
fi
note "bench: $([ "$status" -eq 0 ] && echo ok || echo FAILED) in $(($(date +%s) - start)) s"
exit "$status"
