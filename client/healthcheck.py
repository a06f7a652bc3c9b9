"""Container healthcheck without curl: ``python /opt/odstack/client/healthcheck.py [/readyz]``.

Asks the local gunicorn (port from BIND) for the path (default /healthz); exit 0 on HTTP 200.
"""
from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    port = os.environ.get("BIND", "127.0.0.1:8080").rsplit(":", 1)[-1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except Exception as error:  # noqa: BLE001 - any failure means unhealthy
        print(f"healthcheck {path}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
