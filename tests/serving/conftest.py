"""Fixtures for tests that need a served detector: the test SavedModel, a serving directory, a running
development model server (odstack.serving.modelserver) on 127.0.0.1.

Other test packages reuse them by importing them into their own conftest.py (pytest then finds them):

    from tests.serving.conftest import detector_saved_model, model_server, serving_dir  # noqa: F401

The model is ``tests/serving/model_factory.py``'s test detector (red/green/blue blobs, see its docstring);
``make_image``/``expected_detections`` there give an input and its answer. Tests that kill the server or
change versions start their own ``ModelServerProcess`` on their own directory instead of these.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.serving.model_factory import ModelServerProcess, add_version, build_detector_saved_model

MODEL_NAME = "detector"


@pytest.fixture(scope="session")
def detector_saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export of the test detector: saved_model.pb, variables/, assets.extra/label_map.pbtxt."""
    return build_detector_saved_model(tmp_path_factory.mktemp("detector") / "saved_model")


@pytest.fixture(scope="session")
def serving_dir(tmp_path_factory: pytest.TempPathFactory, detector_saved_model: Path) -> Path:
    """``<tmp>/serving`` laid out like output/serving: ``detector/1/`` holds the test detector. Read-only by
    convention (a session-wide server serves it)."""
    root = tmp_path_factory.mktemp("serving-root") / "serving"
    add_version(root / MODEL_NAME, 1, detector_saved_model)
    return root


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory, serving_dir: Path) -> Iterator[str]:
    """``127.0.0.1:<port>`` of a model server whose model ``detector`` version 1 is AVAILABLE."""
    server = ModelServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(serving_dir / MODEL_NAME)],
                                log_path=tmp_path_factory.mktemp("logs") / "modelserver.log").start()
    try:
        server.wait_available(MODEL_NAME)
        yield server.address
    finally:
        server.stop()
