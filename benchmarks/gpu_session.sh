#!/usr/bin/env bash
# One GPU session, prepared: `PYTHONPATH=. bash benchmarks/gpu_session.sh` from the repository root,
# results under $OUT (default: a new temp folder). Needs torch + torchvision, no internet, no pip.
# Fits a 9-minute wall budget: every step has its own timeout and a step that fails or times out
# does not stop the next one (what it printed so far is kept under $OUT).
#
#   1. CIFAR-100-format files of random uint8 images (benchmarks/make_cifar.py), read by torchvision
#   2. per-run GPU memory, measured and counted          -> $OUT/gpu_memory.txt
#   3. benchmarks/epoch_time.py on the three settings    -> $OUT/epoch_time.{txt,json}
#   4. a 2-epoch `poolbench run --compile` of ResNet-56  -> $OUT/run.{out,err}, run_result.json
#   5. a `poolbench sweep --jobs 4` of 4 runs (1 epoch)  -> $OUT/sweep.txt (smoke: 2 runs, --jobs 2)
#   6. a sweep whose --jobs cannot fit, refused          -> $OUT/sweep_refused.txt
#
# `--device cpu --smoke` runs every step on tiny sizes on the CPU (CI does, in tests/test_benchmarks.py).
set -uo pipefail
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
export PYTHONPATH="$PWD/benchmarks/fake_cifar:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export POOLBENCH_FAKE_CIFAR="$WORK/data"
step() { echo "== $(date +%T) $*" | tee -a "$OUT/session.log"; }

if [ "$SMOKE" = 1 ]; then
  TRAIN=256; TEST=100; BENCH=(--smoke); RUN=(--epochs 1 --batch-size 32); SWEEP=(--epochs 1 --batch-size 64)
  POOLS=gap,gmp; JOBS=2; MEMORY=("resnet56 --dataset cifar100")
  export POOLBENCH_COMPILE_BACKEND=eager  # CPU inductor compiles for minutes; eager still traces
  T_BENCH=120; T_RUN=120; T_SWEEP=180
else
  TRAIN=50000; TEST=10000; BENCH=(--max-steps 60 --pack-seconds 15 --pack-settings resnet56-cifar100)
  RUN=(--epochs 2); SWEEP=(--epochs 1); T_BENCH=300; T_RUN=100; T_SWEEP=120
  POOLS=gap,gmp,gem,avgmax; JOBS=4
  MEMORY=("resnet56 --dataset cifar100" "vgg16bn --dataset cifar100" "mobilenetv2 --dataset fmnist --num-classes 10")
fi

step "device $DEVICE, smoke $SMOKE, results in $OUT"
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; "$PY" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$OUT/machine.txt" 2>&1

step "1. CIFAR-100 files ($TRAIN train, $TEST test images)"
POOLBENCH_FAKE_CIFAR= "$PY" benchmarks/make_cifar.py --root "$WORK/data" --train "$TRAIN" --test "$TEST" >> "$OUT/session.log" 2>&1

step "2. GPU memory per run"
for spec in "${MEMORY[@]}"; do
  # shellcheck disable=SC2086
  timeout 60 "$PY" -m poolbench.gpu_memory --arch $spec >> "$OUT/gpu_memory.txt" 2>&1
done

step "3. epoch_time.py"
timeout "$T_BENCH" "$PY" benchmarks/epoch_time.py --device "$DEVICE" "${BENCH[@]}" --json "$OUT/epoch_time.json" \
  > "$OUT/epoch_time.txt" 2> "$OUT/epoch_time.err"
echo "exit $?" >> "$OUT/epoch_time.txt"

step "4. poolbench run --compile, ResNet-56"
timeout "$T_RUN" "$PY" -m poolbench run --setting resnet56-cifar100 --data-root "$WORK/data" --no-download \
  --device "$DEVICE" --compile "${RUN[@]}" --output-dir "$WORK/run" > "$OUT/run.out" 2> "$OUT/run.err"
echo "exit $?" >> "$OUT/run.out"
cp "$WORK/run/result.json" "$OUT/run_result.json" 2>/dev/null

step "5. poolbench sweep --jobs $JOBS"
timeout "$T_SWEEP" "$PY" -m poolbench sweep --pools "$POOLS" --settings resnet56-cifar100 --seeds 42 \
  --data-root "$WORK/data" --no-download --device "$DEVICE" "${SWEEP[@]}" --jobs "$JOBS" --out "$WORK/sweep" \
  > "$OUT/sweep.txt" 2>&1
echo "exit $?" >> "$OUT/sweep.txt"

if [ "$DEVICE" != cpu ]; then
  step "6. a sweep that cannot fit: refused"
  timeout 60 "$PY" -m poolbench sweep --pools gap --settings resnet56-cifar100 --seeds 1 --data-root "$WORK/data" \
    --no-download --jobs 1000 --out "$WORK/refused" > "$OUT/sweep_refused.txt" 2>&1
  echo "exit $?" >> "$OUT/sweep_refused.txt"
fi
step "done"
rm -rf "$WORK"
