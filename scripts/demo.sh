#!/usr/bin/env bash
# `make demo`: the whole chain on a synthetic dataset, for a newcomer, with or without Docker.
#   dataset (COCO JSON) -> TFRecords -> trained detector -> SavedModel for serving -> TFLite + TF.js
#   (parity table) -> serving stack -> a held-out image posted over REST -> detections + annotated image.
# Every step is a Makefile target, so each runs in its image (RUNNER=docker) or venv (RUNNER=local);
# re-running reuses what exists (the dataset, the trained run, the exports).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNNER=${RUNNER:?RUNNER must be docker or local}
DEMO=output/demo-data
SRC=input/demo-shapes
RUN=demo
MODEL_NAME=${MODEL_NAME:-detector}
STEPS=${DEMO_STEPS:-400}
CLIENT_PORT=${CLIENT_PORT:-8080}
mkdir -p "$DEMO"
timings=()

step() {  # step NAME COMMAND...: run it, remember how long it took
    local name=$1 start=$SECONDS
    shift
    echo
    echo "=== demo: $name"
    "$@"
    timings+=("$(printf '%-22s %4d s' "$name" $((SECONDS - start)))")
}

m() { make --no-print-directory RUNNER="$RUNNER" "$@"; }

step "dataset" bash -c "test -f $SRC/_annotations.coco.json || make --no-print-directory RUNNER=$RUNNER synth SYNTH_OUT=$SRC"
step "convert (make data)" bash -c "test -f $DEMO/tf_records/report.json || \
    make --no-print-directory RUNNER=$RUNNER data SRC=$SRC OUT=$DEMO/tf_records"
# from scratch: no weights can be downloaded where the demo and CI run (your own data: INIT=coco, README)
step "train (tfvision)" m train DATA="$DEMO/tf_records" RUN="$RUN" IMAGE_SIZE=128 STEPS="$STEPS" INIT=none
step "export (SavedModel)" m export RUN="$RUN" MODEL_NAME="$MODEL_NAME"
step "tfjs" m tfjs RUN="$RUN"
# both TFLite variants in one run of the toco stage, which ends with the parity table of every format
step "tflite + parity" m tflite RUN="$RUN" QUANT=float,int8
step "serve" m serve-bg MODEL_NAME="$MODEL_NAME" CLIENT_PORT="$CLIENT_PORT"

# a held-out image: the first val image of the converted dataset
held_out=$(python3 -c "import csv,sys; r=list(csv.DictReader(open('$DEMO/tf_records/tf_csv/val.csv'))); print('$SRC/'+r[0]['filename'])")
# the model's own default: the best-F1 threshold its evaluation found (shipped in assets.extra/thresholds.json)
threshold=$(python3 scripts/served_threshold.py "output/serving/$MODEL_NAME" 0.3)
step "detect (REST, threshold $threshold)" python3 client/predict.py "$held_out" --url "http://127.0.0.1:$CLIENT_PORT" --threshold "$threshold" \
    --jpeg "$DEMO/detections.jpg"

ap50=$(python3 -c "import json; b=json.load(open('output/$RUN/metrics.json'))['best']; print(f\"{b['AP50']:.3f} (AP {b['AP']:.3f}, step {b['step']})\")")
cat <<EOF

=== demo: done
  dataset        $SRC (synthetic shapes, COCO JSON) -> $DEMO/tf_records (report.html)
  trained run    output/$RUN  (best AP50 $ap50)
  serving model  output/serving/$MODEL_NAME/
  TFLite, TF.js  output/$RUN/tflite/, output/$RUN/tfjs/   (parity: output/$RUN/parity.json)
  detections     $DEMO/detections.jpg
  web page       http://127.0.0.1:$CLIENT_PORT/   (stop the stack: make serve-down RUNNER=$RUNNER)

  time per part:
$(printf '    %s\n' "${timings[@]}")

  next: on a GPU host, \`make train ENGINE=odapi MODEL=ssd_mobilenet_v2_320x320 SRC=…\` (README),
        and \`docker-compose up\` to serve with TensorFlow Serving.
EOF
