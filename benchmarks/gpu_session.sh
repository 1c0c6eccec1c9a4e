#!/usr/bin/env bash
# One GPU session, prepared: `PYTHONPATH=. bash benchmarks/gpu_session.sh` from the repository root,
# results under $OUT (default: a new temp folder). Needs torch + torchvision, no internet, no pip.
# Fits a 10-minute call: every step has its own timeout and a step that fails or times out does not
# stop the next one (what it printed so far is kept under $OUT).
#
#   1. CIFAR-100-format files of random uint8 images (benchmarks/make_cifar.py), read by torchvision
#   2. per-run GPU memory, measured and counted          -> $OUT/gpu_memory.txt
#   3. a 2-epoch `poolbench run --compile` of ResNet-56  -> $OUT/run.{out,err}, run_result.json
#   4. a sweep whose --jobs cannot fit, refused          -> $OUT/sweep_refused.txt
#   5. benchmarks/epoch_time.py on the three settings    -> $OUT/epoch_time.{txt,json}
#   6. a real sweep on the device: the diagnostic suite for gap, gmp, gem, avgmax and $POOLS_DIAG
#      (default: the own pooling, which must be among them) over 10 seeds, --jobs 16, in the time
#      left of $DEADLINE seconds (default 560; runs go seed by seed, so a cut leaves every pooling
#      the same seeds); its report against the own pooling, and the sweep folder without
#      checkpoints                                       -> $OUT/diag_sweep.txt, diag_report.md, diag_sweep.tgz
#
# `--device cpu --smoke` runs every step on tiny sizes on the CPU (CI does, in tests/test_benchmarks.py).
set -uo pipefail
export PYTHONUNBUFFERED=1  # a step cut short by its timeout still leaves what it printed
DEVICE=cuda
SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "usage: $0 [--device cuda|cpu] [--smoke]" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$(mktemp -d)}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEADLINE="${DEADLINE:-560}"
OWN="$(PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'from poolbench.pools import OWN_POOLING; print(OWN_POOLING)')"
POOLS_DIAG="${POOLS_DIAG:-$OWN}"
export PYTHONPATH="$PWD/benchmarks/fake_cifar:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export POOLBENCH_FAKE_CIFAR="$WORK/data"
step() { echo "== $(date +%T) $*" | tee -a "$OUT/session.log"; }

if [ "$SMOKE" = 1 ]; then
  TRAIN=64; TEST=32; BENCH=(--smoke); RUN=(--epochs 1 --batch-size 32); MEMORY=("resnet56 --dataset cifar100")
  DIAG=(--settings diag-count --seeds 42,123 --epochs 1 --image-size 16); DIAG_JOBS=2; BASELINES=gap  # 4 runs: seconds
  export POOLBENCH_COMPILE_BACKEND=eager  # CPU inductor compiles for minutes; eager still traces
  T_RUN=120; T_BENCH=120
else
  TRAIN=50000; TEST=10000; BENCH=(--max-steps 40 --pack-seconds 12 --pack-settings resnet56-cifar100)
  RUN=(--epochs 2); T_RUN=100; T_BENCH=170
  DIAG=(--suite diagnostics --seeds 42,123,456,7,2024,1,2,3,4,5); DIAG_JOBS=16; BASELINES=gap,gmp,gem,avgmax
  MEMORY=("resnet56 --dataset cifar100" "vgg16bn --dataset cifar100" "mobilenetv2 --dataset fmnist --num-classes 10")
fi

step "device $DEVICE, smoke $SMOKE, results in $OUT"
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$OUT/machine.txt" 2>&1

step "1. CIFAR-100 files ($TRAIN train, $TEST test images)"
POOLBENCH_FAKE_CIFAR= "$PY" benchmarks/make_cifar.py --root "$WORK/data" --train "$TRAIN" --test "$TEST" >> "$OUT/session.log" 2>&1

step "2. GPU memory per run"
for spec in "${MEMORY[@]}"; do
  # shellcheck disable=SC2086
  timeout 45 "$PY" -m poolbench.gpu_memory --arch $spec >> "$OUT/gpu_memory.txt" 2>&1
done

step "3. poolbench run --compile, ResNet-56"
timeout "$T_RUN" "$PY" -m poolbench run --setting resnet56-cifar100 --data-root "$WORK/data" --no-download \
  --device "$DEVICE" --compile "${RUN[@]}" --output-dir "$WORK/run" > "$OUT/run.out" 2> "$OUT/run.err"
echo "exit $?" >> "$OUT/run.out"
cp "$WORK/run/result.json" "$OUT/run_result.json" 2>/dev/null

if [ "$DEVICE" != cpu ]; then
  step "4. a sweep that cannot fit: refused"
  timeout 60 "$PY" -m poolbench sweep --pools gap --settings resnet56-cifar100 --seeds 1 --data-root "$WORK/data" \
    --no-download --jobs 1000 --out "$WORK/refused" > "$OUT/sweep_refused.txt" 2>&1
  echo "exit $?" >> "$OUT/sweep_refused.txt"
fi

step "5. epoch_time.py"
timeout "$T_BENCH" "$PY" benchmarks/epoch_time.py --device "$DEVICE" "${BENCH[@]}" --json "$OUT/epoch_time.json" \
  > "$OUT/epoch_time.txt" 2> "$OUT/epoch_time.err"
echo "exit $?" >> "$OUT/epoch_time.txt"

T_DIAG=$((DEADLINE - SECONDS - 30)); [ "$T_DIAG" -lt 60 ] && T_DIAG=60
step "6. the diagnostic suite: $BASELINES,$POOLS_DIAG (${T_DIAG} s)"
timeout "$T_DIAG" "$PY" -m poolbench sweep --pools "$BASELINES,$POOLS_DIAG" "${DIAG[@]}" --device "$DEVICE" \
  --threads 1 --jobs "$DIAG_JOBS" --out "$WORK/diag" > "$OUT/diag_sweep.txt" 2>&1
echo "exit $?" >> "$OUT/diag_sweep.txt"
if "$PY" -c "import statsmodels" 2> /dev/null; then  # the report's Holm correction needs it
  "$PY" -m poolbench report "$WORK/diag" --baseline "$OWN" --output "$OUT/diag_report.md" >> "$OUT/diag_sweep.txt" 2>&1
else
  echo "no statsmodels on this machine: make the report from diag_sweep.tgz with poolbench report" >> "$OUT/diag_sweep.txt"
fi
tar czf "$OUT/diag_sweep.tgz" --exclude=checkpoint.pt -C "$WORK" diag

step "done"
rm -rf "$WORK"
