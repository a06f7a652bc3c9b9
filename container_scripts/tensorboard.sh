#!/usr/bin/env bash
# TensorBoard over a run's event files (train/ and eval/ under output/<run>), bound to loopback by default.
set -euo pipefail
exec tensorboard "$@"
