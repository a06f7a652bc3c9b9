#!/usr/bin/env bash
# synth stage: same script for both runners.
set -euo pipefail
exec python -m odstack synth "$@"
