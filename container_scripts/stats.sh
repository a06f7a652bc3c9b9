#!/usr/bin/env bash
# The data stage's report without records (`make stats`). Same script for both runners.
set -euo pipefail
exec python -m odstack stats "$@"
