#!/usr/bin/env bash
# Data stage: annotated dataset -> TFRecords + label_map.pbtxt + report. Same script for both runners.
set -euo pipefail
exec python -m odstack data "$@"
