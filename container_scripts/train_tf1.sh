#!/usr/bin/env bash
# TF1.15 OD API training (odapi-tf1 image, Python 3.6: no odstack code there).
# Usage: train_tf1.sh PIPELINE_CONFIG MODEL_DIR NUM_TRAIN_STEPS
set -euo pipefail
exec python3 -m object_detection.model_main --pipeline_config_path="$1" --model_dir="$2" \
  --num_train_steps="$3" --sample_1_of_n_eval_examples=1 --alsologtostderr
