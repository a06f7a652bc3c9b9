#!/usr/bin/env bash
# eval stage: same script for both runners.
set -euo pipefail
exec python -m odstack eval "$@"
