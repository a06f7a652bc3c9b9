#!/usr/bin/env bash
# train stage: same script for both runners.
set -euo pipefail
exec python -m odstack train "$@"
