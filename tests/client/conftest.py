"""Client tests: run them in the client's own (TensorFlow-free) venv; the model server runs from its own.

    PYTHONPATH=.:client .venv/client/bin/python -m pytest tests/client -q      (make test-client)

The served model is tests/serving/model_factory.py's test detector, built and served by
.venv/modelserver's interpreter (subprocesses) through the fixtures of tests/serving/conftest.py.
In an interpreter without the client's packages (flask, grpc, the extracted protos) the whole directory
is left out, with the reason in pytest's header.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Iterator

import pytest

_MISSING = [m for m in ("flask", "grpc", "PIL", "prometheus_client", "tensorflow_serving")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.client.support import Gunicorn
    from tests.serving.conftest import MODEL_NAME, detector_saved_model, model_server, serving_dir  # noqa: F401


def pytest_report_header(config: pytest.Config) -> str | None:
    if _MISSING:
        return (f"tests/client: not collected, this interpreter lacks {', '.join(_MISSING)} "
                "(run them with .venv/client: make test-client)")
    return None


if not _MISSING:

    @pytest.fixture()
    def app(model_server: str, serving_dir: Path) -> Any:
        from odclient import create_app

        return create_app({"TESTING": True, "TF_SERVING_ADDR": model_server, "SERVING_DIR": str(serving_dir),
                           "MODEL_NAME": MODEL_NAME})

    @pytest.fixture()
    def client(app: Any) -> Any:
        return app.test_client()

    @pytest.fixture(scope="session")
    def gunicorn(model_server: str, serving_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
        """The real thing: container_scripts/client.sh (gunicorn, 2 workers x 4 threads) on a free port."""
        server = Gunicorn({"TF_SERVING_ADDR": model_server, "SERVING_DIR": str(serving_dir), "MODEL_NAME": MODEL_NAME,
                           "MAX_UPLOAD_MB": "8"},
                          tmp_path_factory.mktemp("gunicorn") / "gunicorn.log").start()
        try:
            yield server
        finally:
            server.stop()
