#!/usr/bin/env bash
# tfjs stage: output/<run>/saved_model -> output/<run>/tfjs/ (TF.js graph model + signature.json), then one
# run in Node (@tensorflow/tfjs) as a check. Same script for both runners (the tfjs image, or .venv/tfjs +
# node + odstack/export/js/node_modules with RUNNER=local).
set -euo pipefail
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}  # TF 2.19 prints CUDA/XLA noise on CPU hosts
exec python -m odstack tfjs "$@"
