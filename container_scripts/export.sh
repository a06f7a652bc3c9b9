#!/usr/bin/env bash
# export stage: SavedModel (OD API signature) + TF Serving copy; same script for both runners.
set -euo pipefail
exec python -m odstack export "$@"
