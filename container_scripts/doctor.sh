#!/usr/bin/env bash
# doctor: same script for both runners (in the odapi image or .venv/odapi): what TensorFlow here can use.
set -euo pipefail
exec python -m odstack doctor "$@"
