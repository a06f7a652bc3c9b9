#!/usr/bin/env bash
# tflite stage (toco image): TFLite conversion, then parity; same script for both runners.
set -euo pipefail
exec python -m odstack tflite "$@"
