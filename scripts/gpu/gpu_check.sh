#!/usr/bin/env bash
# For the day a GPU host is at hand: does odstack really train on the GPU, and how much faster?
#   1. builds the GPU variant (RUNNER=local: make venvs GPU=1; RUNNER=docker: make image-odapi GPU=1)
#   2. make doctor: TensorFlow must see the GPU (else: the cause, exit 1)
#   3. trains tfvision (and odapi if its OD API is installed) briefly on synthetic shapes, GPUS=all and
#      GPUS=none, and prints steps/s on GPU against CPU
# Needs the NVIDIA driver (nvidia-smi) and, for RUNNER=docker, the NVIDIA container toolkit; the odapi
# run downloads its model-zoo checkpoint. Everything goes to output/gpu-check*/ and input/gpu-check-shapes.
#   RUNNER=local STEPS=300 IMAGE_SIZE=320 bash scripts/gpu/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNNER=${RUNNER:-local}
STEPS=${STEPS:-300}
IMAGE_SIZE=${IMAGE_SIZE:-320}
SHAPES=input/gpu-check-shapes
DATA=output/gpu-check-data
m() { make --no-print-directory RUNNER="$RUNNER" GPU=1 "$@"; }
fail() { echo "gpu check: $*" >&2; exit 1; }

command -v nvidia-smi >/dev/null || fail "no NVIDIA driver on this host (nvidia-smi not found): this check is for a GPU host"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi failed"

echo "== 1. the GPU variant ($RUNNER)"
if [ "$RUNNER" = docker ]; then m image-odapi; else m venvs; fi

echo "== 2. make doctor"
m doctor ARGS="out=output/gpu-check-doctor.json"
python3 - <<'PY' || exit 1
import json, sys
tf = json.load(open("output/gpu-check-doctor.json"))["tensorflow"]
if not tf.get("gpus"):
    sys.exit(f"gpu check: TensorFlow sees no GPU: {tf.get('why_no_gpu')}")
print(f"gpu check: TensorFlow {tf['version']} sees {len(tf['gpus'])} GPU(s): {', '.join(tf['gpus'])}")
PY

echo "== 3. training briefly on GPU and on CPU"
[ -f "$SHAPES/_annotations.coco.json" ] || m synth SYNTH_OUT="$SHAPES"
[ -f "$DATA/report.json" ] || m data SRC="$SHAPES" OUT="$DATA"
engines="tfvision"
python3 -c "import json,sys; sys.exit(0 if json.load(open('output/gpu-check-doctor.json'))['engines']['odapi']['installed'] else 1)" \
  && engines="tfvision odapi"
results=()
for engine in $engines; do
  for gpus in all none; do
    run="gpu-check-$engine-$gpus"
    rm -rf "output/$run"
    log="output/gpu-check-$engine-$gpus.log"
    start=$(date +%s)
    m train ENGINE="$engine" RUN="$run" DATA="$DATA" STEPS="$STEPS" GPUS="$gpus" \
      $([ "$engine" = tfvision ] && echo IMAGE_SIZE="$IMAGE_SIZE") 2>&1 | tee "$log"
    seconds=$(( $(date +%s) - start ))
    # tfvision logs "N steps/s" per evaluation (training time only); odapi: the whole call's wall time
    rate=$(grep -o '[0-9.]* steps/s' "$log" | tail -1 | cut -d' ' -f1 || true)
    results+=("$engine GPUS=$gpus: ${rate:-$(python3 -c "print(f'{$STEPS / max(1, $seconds):.1f}')")} steps/s ($seconds s for $STEPS steps)")
    if [ "$gpus" = all ] && ! grep -q "training on GPU\|training on [0-9]* GPUs" "$log"; then
      fail "$engine with GPUS=all did not say it trains on the GPU (see $log)"
    fi
  done
done
echo "== gpu check: done"
printf '  %s\n' "${results[@]}"
