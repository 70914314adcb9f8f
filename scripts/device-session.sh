#!/bin/bash
# Every GPU check and figure the open issues ask for, as one background job on the GPU machine that outlives the
# 10-minute limit of a single device call (the machine stays warm between back-to-back calls):
#   call 1:  setsid bash scripts/device-session.sh /tmp/ferry-session STEP... >/dev/null 2>&1 < /dev/null &
#            then   bash scripts/device-session.sh --collect /tmp/ferry-session SECONDS
#   call N:  bash scripts/device-session.sh --collect /tmp/ferry-session SECONDS
# --collect waits up to SECONDS for the job to finish, then packs what it has into $OUT/session.tgz and prints the
# progress lines; run it again in the next call while the job is still going.
#
# The real SmolLM2 file (98 MB) does not fit one call's 64 MiB of carried files: split it in two here (head -c / tail -c
# into devwork/smol1/part1 and devwork/smol2/part2, .git/info/exclude has /devwork/), carry part 1 with the call that
# starts the job (copy it to /tmp/ferry-smol/part1) and part 2 with the next, which joins them into
# /tmp/ferry-smol/SmolLM2-135M-Instruct.Q4_1.gguf; the smollm2 step waits for that file (so put it after steps that
# outlast the first call). Write the commit to devwork/git-sha and carry it with the first call, so that the reports
# name it (device-run.sh says how). Carry .devdeps in every call: a call that does not carry it removes it there, and the
# steps that reconfigure (repeat, sanitize) need it.
# Order used on 2026-12-05 (27 minutes of device time, sanitize did not finish): all flux serve smollm2 bench13 repeat
# sanitize kernels bench8. Put the steps an issue still needs first; after that session: all repeat sanitize upload
# serve bench13 fluxbench smollm2 ncu kernels bench8 calibrate (docs/results.md from DIR/bench/results.md).
# 2026-12-06 (H100; ~14 of 30 minutes went to failed starts): all serve fused fluxbench sanitize repeat ran, bench13
# did not finish. Next: all fusedsuite sanitize bench13 smollm2 phased kernels.
# 2026-12-06, second (H100; ~9 of 30 minutes to failed starts): all attention sanitize fusedsuite smollm2, then on the
# final build all smollm2. sanitize with 300-s limits and 8 jobs: the stack tests' racecheck (offload, flux) and all
# three tools on test_llama_gpu ran out of time (memcheck of its perplexity case, since cut under FERRY_TEST_QUICK).
# Next: sanitize alone with FERRY_SANITIZE_JOBS=6 (default limit 480 s), then fluxbench fluxcpu bench13.
#
# STEP (run in the order given, each into DIR/STEP/, one line each in DIR/progress.txt):
#   all        build (scripts/device-run.sh) and run the whole test suite, GPU tests required to run
#   fusedsuite the GPU tests with FERRY_FUSED_OPS=on (the SmolLM2 cases with the file, as smollm2): what turning fused
#              ops on by default needs
#   flux       Flux figures (device-figures.sh flux: no budget, 8/4/2 GiB, F16 floor, FP32-cast comparison)
#   bench13    ferry bench on llama-13b Q4_0, with the simulated 12 GB/s link too (device-bench.sh)
#   fluxbench  ferry bench on the flux-1-dev layout Q4_0 at 8/4/2 GiB, and over the simulated 12 GB/s link
#              (device-bench.sh flux): the Flux rows of docs/results.md
#   fluxcpu    the CPU-bound Flux arms (resident-first at 8/4/2 GiB, cpu-all; device-bench.sh flux-cpu): ~10 minutes
#   smollm2    the real model: perplexity on the GPU (resident and all streamed under a tiny budget) and on the CPU,
#              and its ferry bench; needs the file at $FERRY_SMOLLM2_GGUF (waits up to 180 s for it to appear)
#   serve      ferry serve on llama-13b Q4_0 at 4 and 8 GiB, bench/serve_load.py at 1, 2, 4, 8 streams
#   repeat     the GPU tests 20 times in a row with ctest -j4
#   sanitize   compute-sanitizer memcheck, racecheck and initcheck on every GPU test
#   kernels    GEMV (staged vs direct) and 8B decode figures (device-figures.sh gemv decode)
#   bench8     ferry bench on llama-8b Q4_0 and Q4_K (device-bench.sh llama-8b)
#   calibrate  ferry calibrate --force
#   ncu        Nsight Compute on the quantized GEMV (speed of light, memory, warp states): the profiles issue 12 asks
#              for, as text, from bench_kernels_cuda --gemv-only (first launches of each kernel skipped as warm-up)
#   phased     13B Q4_0 at 4 and 7 GiB: resident-stream plans with part of the streamed blocks phased (CPU in decode,
#              streamed in the prompt), by-kernel and copy-engine activation upload, against resident-first/-stream
#   graphs     decode steps as CUDA graphs on and off (FERRY_DECODE_GRAPHS): ferry bench on SmolLM2 (needs the file, as
#              smollm2) and llama-3-8B Q4_0, all resident
#   fused      fused ops on and off (FERRY_FUSED_OPS): bench_decode_step_cuda (one block's step as graphs), the SmolLM2
#              GPU case and its perplexity with them, then ferry bench on SmolLM2 and llama-3-8B Q4_0 / Q4_K_M, all
#              resident (graphs on, the default)
#   attention  flash attention against the chunked path: bench_attention_cuda, then Flux 1024x1024 steps and the
#              prompts of SmolLM2 (as smollm2, if the file is there) and llama-3-8B, with FERRY_ATTENTION_PATH flash/chunked
#   upload     activations up by the copy engine vs by kernel (FERRY_ACTIVATION_UPLOAD): ferry bench on llama-13b
#              Q4_0 with streamed and CPU layers, each mode in its own run
# Each step after `all` reuses its build. A step that fails is reported and the next one runs.
set -uo pipefail
# FERRY_ROOT: the repository, when this script runs as a copy (a copy, so that a later call that refreshes the
# working tree does not change the script under the running job).
cd "${FERRY_ROOT:-$(dirname "$0")/..}" || exit 2

if [ "${1:-}" = --collect ]; then
  dir=${2:?--collect DIR SECONDS}
  wait_s=${3:-60}
  for ((i = 0; i < wait_s; i += 5)); do
    [ -f "$dir/done" ] && break
    sleep 5
  done
  out=${OUT:-$PWD/out}
  mkdir -p "$out"
  tar czf "$out/session.tgz" -C "$dir" . 2>/dev/null
  cat "$dir/progress.txt" 2>/dev/null
  [ -f "$dir/done" ] && echo "session: finished" || echo "session: still running ($(tail -1 "$dir/current" 2>/dev/null))"
  exit 0
fi

if [ $# -lt 1 ]; then
  echo "usage: $0 DIR STEP... | --collect DIR SECONDS" >&2
  exit 2
fi
dir=$(realpath -m "$1")
shift
mkdir -p "$dir"
rm -f "$dir/done"
progress=$dir/progress.txt
t_start=$(date +%s)
log() { echo "$(date +%H:%M:%S) +$(($(date +%s) - t_start))s $*" | tee -a "$progress"; }
ferry=build-device/ferry
models=${FERRY_BENCH_MODELS:-/tmp/ferry-bench-models}
# The real SmolLM2 file (the header says how it gets here); the steps that use it wait for it with await_smollm2.
smol=${FERRY_SMOLLM2_GGUF:-/tmp/ferry-smol/SmolLM2-135M-Instruct.Q4_1.gguf}
await_smollm2() {
  local i
  for ((i = 0; i < 180; i += 5)); do [ -f "$smol" ] && return 0; sleep 5; done
  [ -f "$smol" ]
}
mkdir -p "$models"  # the steps that make their own model (serve, upload, phased) write it here
export FERRY_BENCH_MODELS=$models
export LD_LIBRARY_PATH=/opt/ferry-deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export FERRY_REQUIRE_GPU=1

# step NAME COMMAND...: runs one step with its output in DIR/NAME/console.log.
step() {
  local name=$1
  shift
  mkdir -p "$dir/$name"
  echo "$name" >"$dir/current"
  local t0
  t0=$(date +%s)
  OUT=$dir/$name "$@" >"$dir/$name/console.log" 2>&1
  local code=$?
  log "$name: $([ "$code" -eq 0 ] && echo ok || echo "FAILED (status $code)") in $(($(date +%s) - t0)) s"
  # The summary lines of the step, so progress.txt alone says what happened (bench steps: the bench's own summary).
  local bench_summary=/dev/null
  [[ $name == bench* || $name == fluxbench || $name == fluxcpu || $name == smollm2 ]] && bench_summary=$dir/bench/bench-summary.txt
  grep -h -E "^(build|tests|repeat|sanitize|overall|bench|results.md|flux|plan|decode|gemv|calibrate|llama|smollm2|serve|PPL|ppl|upload|ncu|graphs|fused|attention| )" \
    "$dir/$name/summary.txt" "$dir/$name/figures-summary.txt" "$dir/$name/bench-summary.txt" \
    "$dir/$name/step-summary.txt" "$bench_summary" 2>/dev/null | sed 's/^/    /' | tee -a "$progress"
}

smollm2_step() {
  local gguf=$smol
  local s=$OUT/step-summary.txt
  await_smollm2 || { echo "smollm2: SKIPPED (no $gguf)" | tee -a "$s"; return 1; }
  sha256sum "$gguf" | tee "$OUT/sha256.txt"
  local text=tests/data/apache-license-2.0.txt status=0
  # The real model through phased and streamed layers at once against the resident run (test_llama_gpu's SmolLM2 case)
  if FERRY_SMOLLM2_GGUF=$gguf timeout 200 build-device/tests/test_llama_gpu -tc='SmolLM2*' -s >"$OUT/test-smollm2.log" 2>&1; then
    echo "smollm2 test (phased + streamed vs resident, greedy): ok; $(grep -E 'greedy tokens (agree|part)' "$OUT/test-smollm2.log" | tr '\n' ' ')" | tee -a "$s"
  else
    status=1
    echo "smollm2 test (phased + streamed vs resident, greedy): FAILED ($(grep -E 'ERROR|greedy' "$OUT/test-smollm2.log" | head -3 | tr '\n' ' '))" | tee -a "$s"
  fi
  # name: perplexity arguments
  local -a runs=("gpu-resident:--vram 8GiB --policy resident-first"
    "gpu-auto-1GiB:--vram 1GiB --policy auto"
    "gpu-phased-1GiB:--vram 1GiB --policy resident-stream --phased blk\\.[0-9]*[02468]")
  for r in "${runs[@]}"; do
    local name=${r%%:*} args=${r#*:} t0
    t0=$(date +%s%N)
    # shellcheck disable=SC2086
    if timeout 300 "$ferry" perplexity "$gguf" -f "$text" -c 512 $args >"$OUT/ppl-$name.log" 2>&1; then
      echo "smollm2 ppl $name: $(grep -E 'PPL =' "$OUT/ppl-$name.log" | tail -1) in $((($(date +%s%N) - t0) / 1000000)) ms" |
        tee -a "$s"
    else
      status=1
      echo "smollm2 ppl $name: FAILED ($(tail -1 "$OUT/ppl-$name.log"))" | tee -a "$s"
    fi
  done
  FERRY_SMOLLM2_GGUF=$gguf FERRY_BENCH_BUDGET_S=240 bash scripts/device-bench.sh "$dir/bench" smollm2 || status=1
  return "$status"
}

serve_step() {
  local s=$OUT/step-summary.txt status=0
  local m
  m=$models/llama-2-13b-q4_0.gguf
  [ -f "$m" ] || "$ferry" make-model --arch llama --preset llama-2-13b --type q4_0 --seed 1 -o "$m" >/dev/null || return 1
  "$ferry" serve --help >/dev/null 2>&1 || { echo "serve: FAILED (this build has no serve: cpp-httplib missing?)" | tee -a "$s"; return 1; }
  for vram in 4GiB 8GiB; do
    local port=18080 log=$OUT/serve-$vram.log
    # 256 positions per stream: the prompt (~90 tokens) and the answer fit, and 8 caches fit at 4 GiB (512 did not).
    "$ferry" serve "$m" --vram "$vram" --parallel 8 --ctx 256 --port "$port" >"$log" 2>&1 &
    local pid=$!
    for ((i = 0; i < 120; i++)); do grep -q "on http://" "$log" && break; sleep 1; done
    if ! grep -q "on http://" "$log"; then
      echo "serve $vram: FAILED (server not up: $(tail -2 "$log"))" | tee -a "$s"
      kill "$pid" 2>/dev/null
      status=1
      continue
    fi
    grep "on http://" "$log" | tee -a "$s"
    if PYTHONUNBUFFERED=1 timeout 240 python3 bench/serve_load.py --url "http://127.0.0.1:$port" --streams 1,2,4,8 \
      --max-tokens 32 --repeat 2 --json "$OUT/serve-$vram.json" >"$OUT/serve-$vram.md" 2>&1; then
      echo "serve $vram: ok" | tee -a "$s"
      sed 's/^/    /' "$OUT/serve-$vram.md" | tee -a "$s"
    else
      echo "serve $vram: FAILED ($(tail -2 "$OUT/serve-$vram.md"))" | tee -a "$s"
      status=1
    fi
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    echo "serve $vram: server exit status $? after SIGTERM" | tee -a "$s"
  done
  return "$status"
}

ncu_step() {
  local ncu
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  [ -x "$ncu" ] || { echo "ncu: FAILED (no ncu)" >>"$OUT/step-summary.txt"; return 1; }
  timeout 300 "$ncu" --kernel-name regex:'quant_gemv' --launch-skip 20 --launch-count 12 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    --section LaunchStats --section Occupancy build-device/bench/bench_kernels_cuda --gemv-only \
    >"$OUT/ncu-gemv.txt" 2>&1
  local code=$?
  echo "ncu: $([ "$code" -eq 0 ] && echo ok || echo "FAILED (status $code)") ($(grep -c 'quant_gemv' "$OUT/ncu-gemv.txt") kernel lines; ncu-gemv.txt)" \
    >>"$OUT/step-summary.txt"
  return "$code"
}

upload_step() {
  local m=$models/llama-2-13b-q4_0.gguf status=0
  [ -f "$m" ] || "$ferry" make-model --arch llama --preset llama-2-13b --type q4_0 --seed 1 -o "$m" >/dev/null || return 1
  for mode in copy kernel; do
    FERRY_ACTIVATION_UPLOAD=$mode timeout 240 "$ferry" bench "$m" --vram 8GiB,4GiB --policy resident-stream,resident-first \
      -p 64 -n 32 -r 3 --timeline --out-dir "$OUT/upload-$mode" >"$OUT/upload-$mode.md" 2>"$OUT/upload-$mode.log" ||
      status=1
    echo "upload $mode: $(grep -c '| tg32 |' "$OUT/upload-$mode.md") tg rows" >>"$OUT/step-summary.txt"
    grep -E '\| (pp64|tg32) \|' "$OUT/upload-$mode.md" | sed "s/^/    $mode /" >>"$OUT/step-summary.txt"
  done
  return "$status"
}

# ferry bench with an engine setting on and off in alternating processes (the variable is read once per process),
# twice, all resident at 8 GiB: bench_on_off VARIABLE LABEL MODEL... (pp512 / tg128 rows into the step summary).
bench_on_off() {
  local variable=$1 label=$2 s=$OUT/step-summary.txt status=0 m run name
  shift 2
  for m in "$@"; do
    [ -f "$m" ] || { echo "$label: SKIPPED $m (missing)" >>"$s"; status=1; continue; }
    name=$(basename "$m" .gguf)
    for run in on-1 off-1 on-2 off-2; do
      env "$variable=${run%-*}" timeout 200 "$ferry" bench "$m" --vram 8GiB --policy resident-first -p 512 -n 128 \
        -r 3 >"$OUT/$label-$name-$run.md" 2>"$OUT/$label-$name-$run.log" || status=1
      grep -E '\| (pp512|tg128) \|' "$OUT/$label-$name-$run.md" | sed "s/^/    $label $run $name /" >>"$s"
    done
  done
  return "$status"
}

# Decode graphs (issue 12): FERRY_DECODE_GRAPHS on and off on the real SmolLM2 model and llama-3-8B shapes Q4_0.
graphs_step() {
  local s=$OUT/step-summary.txt status=0 m8=$models/llama-3-8b-q4_0.gguf
  [ -f "$m8" ] || "$ferry" make-model --arch llama --preset llama-3-8b --type q4_0 --seed 1 -o "$m8" >/dev/null || return 1
  # The real model's GPU case (phased and streamed layers against the resident run), with graphs on as by default.
  if await_smollm2; then
    if FERRY_SMOLLM2_GGUF=$smol timeout 200 build-device/tests/test_llama_gpu -tc='SmolLM2*' -s >"$OUT/test-smollm2.log" 2>&1; then
      echo "graphs smollm2 test: ok; $(grep -E 'greedy tokens (agree|part)' "$OUT/test-smollm2.log" | tr '\n' ' ')" >>"$s"
    else
      status=1
      echo "graphs smollm2 test: FAILED ($(grep -E 'ERROR|greedy' "$OUT/test-smollm2.log" | head -3 | tr '\n' ' '))" >>"$s"
    fi
  fi
  bench_on_off FERRY_DECODE_GRAPHS graphs "$smol" "$m8" || status=1
  return "$status"
}

# The fused ops (FERRY_FUSED_OPS, issue 12): correctness on the real model, then decode speed on and off.
fused_step() {
  local s=$OUT/step-summary.txt status=0 m8=$models/llama-3-8b-q4_0.gguf m8k=$models/llama-3-8b-q4_k_m.gguf
  [ -f "$m8" ] || "$ferry" make-model --arch llama --preset llama-3-8b --type q4_0 --seed 1 -o "$m8" >/dev/null || return 1
  [ -f "$m8k" ] || "$ferry" make-model --arch llama --preset llama-3-8b --type q4_k_m --seed 1 -o "$m8k" >/dev/null ||
    return 1
  # One block's decode step, fused and not, as CUDA graphs (kernel level, before the end-to-end runs below)
  if timeout 120 build-device/bench/bench_decode_step_cuda -o "$OUT/decode-step.json" >"$OUT/decode-step.md" 2>&1; then
    grep -E '^\| (SmolLM2|Llama)' "$OUT/decode-step.md" | sed 's/^/    decode-step /' >>"$s"
  else
    status=1
    echo "fused decode-step bench: FAILED ($(tail -1 "$OUT/decode-step.md"))" >>"$s"
  fi
  if await_smollm2; then
    if FERRY_FUSED_OPS=on FERRY_SMOLLM2_GGUF=$smol timeout 200 build-device/tests/test_llama_gpu -tc='SmolLM2*' -s \
      >"$OUT/test-smollm2-fused.log" 2>&1; then
      echo "fused smollm2 test: ok; $(grep -E 'greedy tokens (agree|part)' "$OUT/test-smollm2-fused.log" | tr '\n' ' ')" >>"$s"
    else
      status=1
      echo "fused smollm2 test: FAILED ($(grep -E 'ERROR|greedy' "$OUT/test-smollm2-fused.log" | head -3 | tr '\n' ' '))" >>"$s"
    fi
    for f in on off; do
      FERRY_FUSED_OPS=$f timeout 120 "$ferry" perplexity "$smol" -f tests/data/apache-license-2.0.txt -c 512 --vram 8GiB \
        --policy resident-first >"$OUT/ppl-fused-$f.log" 2>&1 || status=1
      echo "fused ppl $f: $(grep -E 'PPL =' "$OUT/ppl-fused-$f.log" | tail -1)" >>"$s"
    done
  fi
  bench_on_off FERRY_FUSED_OPS fused "$smol" "$m8" "$m8k" || status=1
  return "$status"
}

# Flash attention (issue 14): the kernels alone (bench_attention_cuda: flash against the chunked cuBLAS path and the
# GEMM rate), then end to end with FERRY_ATTENTION_PATH=flash and =chunked in alternating processes: a Flux step of
# 1024x1024 at 8 and 2 GiB, and the prompts (pp512, pp2048) of SmolLM2 and llama-3-8B Q4_0, all resident.
attention_step() {
  local s=$OUT/step-summary.txt status=0 flux=$models/flux-1-dev-q4_0.gguf m8=$models/llama-3-8b-q4_0.gguf run path m
  if timeout 300 build-device/bench/bench_attention_cuda -o "$OUT/attention.json" >"$OUT/attention.md" 2>&1; then
    grep -E '^\| [a-z].*\| (flash|attention\(\) auto|chunked \| (4608|4096|512)) ' "$OUT/attention.md" |
      sed 's/^/    attention /' >>"$s"
  else
    status=1
    echo "attention bench: FAILED ($(tail -1 "$OUT/attention.md"))" >>"$s"
  fi
  [ -f "$flux" ] || "$ferry" make-model --arch flux --preset flux-1-dev --type q4_0 --seed 1 -o "$flux" >/dev/null ||
    return 1
  [ -f "$m8" ] || "$ferry" make-model --arch llama --preset llama-3-8b --type q4_0 --seed 1 -o "$m8" >/dev/null || return 1
  for run in flash-1 chunked-1 flash-2 chunked-2; do
    path=${run%-*}
    FERRY_ATTENTION_PATH=$path timeout 200 "$ferry" bench "$flux" --vram 8GiB,2GiB --policy auto --image 1024x1024 \
      --txt 512 -r 3 >"$OUT/flux-$run.md" 2>"$OUT/flux-$run.log" || status=1
    grep -E '\| step \|' "$OUT/flux-$run.md" | sed "s/^/    attention $run flux /" >>"$s"
    for m in "$smol" "$m8"; do
      [ -f "$m" ] || continue
      FERRY_ATTENTION_PATH=$path timeout 200 "$ferry" bench "$m" --vram 8GiB --policy resident-first -p 512 -n 0 -r 3 \
        >"$OUT/pp512-$(basename "$m" .gguf)-$run.md" 2>&1 || status=1
      FERRY_ATTENTION_PATH=$path timeout 200 "$ferry" bench "$m" --vram 8GiB --policy resident-first -p 2048 -n 0 -r 3 \
        >"$OUT/pp2048-$(basename "$m" .gguf)-$run.md" 2>&1 || status=1
      grep -hE '\| pp[0-9]+ \|' "$OUT/pp512-$(basename "$m" .gguf)-$run.md" "$OUT/pp2048-$(basename "$m" .gguf)-$run.md" |
        sed "s/^/    attention $run $(basename "$m" .gguf) /" >>"$s"
    done
  done
  return "$status"
}

# Phased placement (issue 13): the resident-stream plan of each budget with a fraction of its streamed blocks made
# phased (interleaved: the CPU computes one while the link copies the next), against resident-first and
# resident-stream in the same session; activations up by the copy engine and by kernel.
phased_step() {
  local m=$models/llama-2-13b-q4_0.gguf status=0 s=$OUT/step-summary.txt
  [ -f "$m" ] || "$ferry" make-model --arch llama --preset llama-2-13b --type q4_0 --seed 1 -o "$m" >/dev/null || return 1
  # auto needs the device's measured rates (the profile cache of a fresh machine is empty)
  timeout 120 "$ferry" calibrate >"$OUT/calibrate.log" 2>&1 || status=1
  for vram in 4GiB 7GiB; do
    "$ferry" plan "$m" --vram "$vram" --policy auto --ctx 544 >"$OUT/plan-auto-$vram.txt" 2>&1 || status=1
    timeout 240 "$ferry" bench "$m" --vram "$vram" --policy resident-first,resident-stream,auto -p 512 -n 32 -r 2 \
      >"$OUT/base-$vram.md" 2>"$OUT/base-$vram.log" || status=1
    grep -E '\| (pp512|tg32) \|' "$OUT/base-$vram.md" | sed "s/^/    base /" >>"$s"
    "$ferry" plan "$m" --vram "$vram" --policy resident-stream --ctx 544 --json >"$OUT/plan-$vram.json" 2>>"$s" || status=1
    for run in copy:0.5 kernel:0.5; do
      local mode=${run%%:*} fraction=${run#*:} plan=$OUT/plan-$vram-${run/:/-}.json
      python3 - "$OUT/plan-$vram.json" "$fraction" "$plan" <<'PY' || status=1
import json, sys
plan = json.load(open(sys.argv[1]))
fraction = float(sys.argv[2])
streamed = [l for l in plan["layers"] if l["placement"] == "streamed" and l["name"].startswith("blk.")]
# every k-th streamed block phased, spread over the streamed run
n = round(fraction * len(streamed))
for j in range(n):
    streamed[int(j * len(streamed) / n)]["placement"] = "phased"
json.dump(plan, open(sys.argv[3], "w"), indent=1)
PY
      FERRY_ACTIVATION_UPLOAD=$mode timeout 200 "$ferry" bench "$m" --plan "$plan" --vram "$vram" -p 512 -n 32 -r 2 \
        >"$OUT/phased-$vram-${run/:/-}.md" 2>"$OUT/phased-$vram-${run/:/-}.log" || status=1
      grep -E '\| (pp512|tg32) \|' "$OUT/phased-$vram-${run/:/-}.md" | sed "s/^/    phased $run /" >>"$s"
    done
  done
  return "$status"
}

log "session start: $* ($(git rev-parse --short HEAD 2>/dev/null || echo no-git))"
nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv,noheader |
  tee -a "$progress"
for s in "$@"; do
  case "$s" in
    all) step all bash scripts/device-run.sh . ;;
    fusedsuite)
      await_smollm2 || echo "fusedsuite: no $smol, its SmolLM2 cases skip" >>"$progress"
      step fusedsuite env FERRY_FUSED_OPS=on FERRY_SMOLLM2_GGUF="$smol" bash scripts/device-run.sh 'cuda|gpu'
      ;;
    flux) step flux bash scripts/device-figures.sh "$dir/flux" flux ;;
    bench13) step bench13 env FERRY_BENCH_BUDGET_S=420 bash scripts/device-bench.sh "$dir/bench" llama-13b llama-13b-link12 ;;
    fluxbench) step fluxbench env FERRY_BENCH_BUDGET_S=300 bash scripts/device-bench.sh "$dir/bench" flux ;;
    fluxcpu) step fluxcpu env FERRY_BENCH_BUDGET_S=600 FERRY_BENCH_RUN_TIMEOUT=900 \
      bash scripts/device-bench.sh "$dir/bench" flux-cpu ;;
    smollm2) step smollm2 smollm2_step ;;
    serve) step serve serve_step ;;
    repeat) step repeat env FERRY_REPEAT=20 bash scripts/device-run.sh ;;
    sanitize) step sanitize env FERRY_SANITIZE=1 FERRY_SANITIZE_TIMEOUT="${FERRY_SANITIZE_TIMEOUT:-480}" bash scripts/device-run.sh ;;
    kernels) step kernels bash scripts/device-figures.sh "$dir/kernels" gemv decode ;;
    bench8) step bench8 env FERRY_BENCH_BUDGET_S=300 bash scripts/device-bench.sh "$dir/bench" llama-8b ;;
    calibrate) step calibrate bash scripts/device-figures.sh "$dir/calibrate" calibrate ;;
    upload) step upload upload_step ;;
    phased) step phased phased_step ;;
    attention) step attention attention_step ;;
    graphs) step graphs graphs_step ;;
    fused) step fused fused_step ;;
    ncu) step ncu ncu_step ;;
    *) log "$s: unknown step" ;;
  esac
done
log "session end"
touch "$dir/done"
