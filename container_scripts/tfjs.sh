#!/usr/bin/env bash
# tfjs stage: output/<run>/saved_model -> output/<run>/tfjs/ (TF.js graph model + signature.json), then one
# run in Node (@tensorflow/tfjs) as a check. Same script for both runners (the tfjs image, or .venv/tfjs +
# node + odstack/export/js/node_modules with RUNNER=local).
set -euo pipefail
exec python -m odstack tfjs "$@"
