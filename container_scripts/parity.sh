#!/usr/bin/env bash
# parity stage (toco image): every exported format vs the SavedModel; same script for both runners.
set -euo pipefail
exec python -m odstack parity "$@"
