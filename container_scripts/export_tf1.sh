#!/usr/bin/env bash
# TF1.15 OD API export (odapi-tf1 image, Python 3.6: no odstack code there), step 1 of `make export TF=1`:
# the run's latest checkpoint -> RUN_DIR/tf1_export/ with export_inference_graph.py's frozen graph
# (frozen_inference_graph.pb), its SavedModel and pipeline.config, plus odstack_export.txt (checkpoint and
# step) for step 2 (odstack.export.tf1 in the odapi image), which gives the SavedModel the TF2 contract.
# Usage: export_tf1.sh RUN_DIR
set -euo pipefail
run_dir=${1:?usage: export_tf1.sh RUN_DIR}
fail() { echo "export TF=1: $*" >&2; exit 2; }

[ -d "$run_dir" ] || fail "no run directory $run_dir: train one with make train TF=1 CONFIG=<pipeline.config> RUN=<name>"
config="$run_dir/pipeline.config"
[ -f "$config" ] || fail "$config is missing: make train TF=1 copies the CONFIG it trains there"
# model_main.py's checkpoint index names the newest checkpoint: model_checkpoint_path: "model.ckpt-<step>"
[ -f "$run_dir/checkpoint" ] || fail "no checkpoint in $run_dir (no 'checkpoint' index file): train first"
prefix=$(sed -n 's/^model_checkpoint_path: *"\(.*\)"$/\1/p' "$run_dir/checkpoint" | head -n 1)
[ -n "$prefix" ] || fail "$run_dir/checkpoint names no model_checkpoint_path: train first"
case "$prefix" in /*) ;; *) prefix="$run_dir/$(basename "$prefix")" ;; esac
step=${prefix##*-}
[[ "$step" =~ ^[0-9]+$ ]] || fail "cannot read the step of checkpoint $prefix"
[ "$step" -gt 0 ] || fail "checkpoint $prefix holds no trained weights (step 0): train longer"
[ -f "$prefix.index" ] || fail "checkpoint $prefix is named in $run_dir/checkpoint but its files are gone"

# exported aside, then one rename: a failed export never leaves a half-written tf1_export/
staging="$run_dir/.tf1_export.tmp-$$"
rm -rf "$staging"
trap 'rm -rf "$staging"' EXIT
python3 -m object_detection.export_inference_graph --input_type=image_tensor \
  --pipeline_config_path="$config" --trained_checkpoint_prefix="$prefix" --output_directory="$staging"
printf 'checkpoint=%s\nstep=%s\n' "$prefix" "$step" > "$staging/odstack_export.txt"
rm -rf "$run_dir/tf1_export"
mv "$staging" "$run_dir/tf1_export"
echo "export TF=1: $prefix (step $step) -> $run_dir/tf1_export (frozen_inference_graph.pb, saved_model/)"
