"""The client venv has TF Serving's gRPC stubs and no TensorFlow runtime (scripts/client/extract_protos.py)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "client" / "extract_protos.py"
sys.path.insert(0, str(SCRIPT.parent))
import extract_protos  # noqa: E402


def test_stubs_import_without_tensorflow_runtime() -> None:
    code = ("import sys; from tensorflow_serving.apis import prediction_service_pb2_grpc, model_service_pb2_grpc; "
            "import tensorflow, odclient.tfserving; "
            "print(tensorflow.__file__, hasattr(tensorflow, 'constant'), 'tensorflow.python' in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith('tensorflow.python')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(REPO / "client")}).stdout.split()
    assert out[0].endswith("site-packages/tensorflow/__init__.py") and Path(out[0]).stat().st_size == 0
    assert out[1:] == ["False", "False", "[]"]
    assert importlib.util.find_spec("tensorflow.python") is None


def test_manifest_matches_the_imports() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    manifest = json.loads((site / extract_protos.MANIFEST).read_text())
    assert manifest["tensorflow-serving-api"] == extract_protos.TFS_VERSION
    assert set(extract_protos.ROOTS) <= set(manifest["files"])
    for name in manifest["files"]:  # closed under imports: every proto import is in the list
        assert extract_protos.imports_of((site / name).read_text()) <= set(manifest["files"]), name


def test_extraction_is_reproducible_from_cached_wheels(tmp_path: Path) -> None:
    wheels = REPO / ".build" / "wheels"
    if not all((wheels / filename).exists() for _, filename, _ in extract_protos.WHEELS.values()):
        pytest.skip("pinned wheels not in .build/wheels (make .venv/client downloads them)")
    files = extract_protos.extract(extract_protos.download(wheels), tmp_path)
    site = Path(sysconfig.get_paths()["purelib"])
    assert files == json.loads((site / extract_protos.MANIFEST).read_text())["files"]
    assert (tmp_path / "tensorflow" / "__init__.py").read_text() == ""
    assert all((tmp_path / name).read_bytes() == (site / name).read_bytes() for name in files)
