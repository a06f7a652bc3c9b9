#!/usr/bin/env bash
# odstack's development model server (TF Serving's gRPC API; see odstack/serving/modelserver.py).
# Same flags as tensorflow_model_server, e.g.
#   modelserver.sh --port=8500 --rest_api_port=8501 --model_name=detector --model_base_path=output/serving/detector
set -euo pipefail
exec python -m odstack.serving.modelserver "$@"
