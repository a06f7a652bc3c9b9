#!/usr/bin/env bash
# models stage: same script for both runners.
set -euo pipefail
exec python -m odstack models "$@"
