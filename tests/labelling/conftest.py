"""Labelling tests (the ML backend and the training manager): run them in .venv/labelling.

    PYTHONPATH=.:client .venv/labelling/bin/python -m pytest tests/labelling      (make test-labelling-api)

The served model is tests/serving/model_factory.py's test detector (classes red, green, blue), served
by a real development model server from .venv/modelserver. The manager's tests run against SQLite and
against a real PostgreSQL (tests/labelling/postgres.py; skipped with the reason when it is not installed).
The loop against a real Label Studio is test_loop.py (ODSTACK_LABELLING_LOOP=1: make test-labelling).
In an interpreter without the labelling venv's packages the directory is left out, with the reason.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterator

import pytest

_MISSING = [m for m in ("flask", "grpc", "sqlalchemy", "psycopg", "tensorflow_serving")
            if importlib.util.find_spec(m) is None]
if _MISSING:
    collect_ignore_glob = ["test_*.py"]
else:
    from tests.labelling.postgres import PostgresServer, missing_reason
    from tests.serving.conftest import MODEL_NAME, detector_saved_model  # noqa: F401
    from tests.serving.model_factory import ModelServerProcess, add_version


def pytest_report_header(config: pytest.Config) -> str | None:
    if _MISSING:
        return (f"tests/labelling: not collected, this interpreter lacks {', '.join(_MISSING)} "
                "(run them with .venv/labelling: make test-labelling-api)")
    return None


if not _MISSING:

    @pytest.fixture(scope="session")
    def labelling_serving(tmp_path_factory: pytest.TempPathFactory, detector_saved_model: Path) -> Iterator[
            tuple[str, Path]]:
        """A model server of our own (tests may add files to its version 1): (address, serving dir)."""
        root = tmp_path_factory.mktemp("labelling-serving") / "serving"
        add_version(root / MODEL_NAME, 1, detector_saved_model)
        server = ModelServerProcess(["--model_name", MODEL_NAME, "--model_base_path", str(root / MODEL_NAME),
                                     "--file_system_poll_wait_seconds", "1"],
                                    log_path=root.parent / "modelserver.log").start()
        try:
            server.wait_available(MODEL_NAME)
            yield server.address, root
        finally:
            server.stop()

    @pytest.fixture(scope="session")
    def postgres_url() -> Iterator[str]:
        reason = missing_reason()
        if reason:
            pytest.skip(f"PostgreSQL tests skipped: {reason}")
        server = PostgresServer().start()
        try:
            yield server.url
        finally:
            server.stop()

    @pytest.fixture(params=["sqlite", "postgresql"])
    def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / 'jobs.db'}"
        url = request.getfixturevalue("postgres_url")
        # a clean table for every test
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS labelling_jobs"))
        engine.dispose()
        return url
