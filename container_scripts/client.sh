#!/usr/bin/env bash
# odstack serving client: gunicorn serving the Flask app (client/odclient), gRPC to TF Serving.
# Same script in the client image and with RUNNER=local (.venv/client on PATH); settings come from the
# environment (client/gunicorn_conf.py, client/odclient/settings.py).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$root/client${PYTHONPATH:+:$PYTHONPATH}"
exec gunicorn -c "$root/client/gunicorn_conf.py" 'odclient:create_app()' "$@"
