"""scripts/odapi/install_odapi.sh as its header documents it: relative PYTHON and ODAPI_ARCHIVE paths.

The archive is a stand-in for tensorflow/models (the real one lives on GitHub): the OD API's layout
(research/object_detection with a .proto, packages/tf1/setup.py, the modules the TF1 smoke test imports)
with almost nothing inside, so that every step of the script runs for real (protoc from grpcio-tools,
pip install, the sample-config copy, the smoke test) in a scratch venv that sees this venv's packages
(TensorFlow, protobuf) through a .pth file and installs into its own site-packages only.
"""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "odapi" / "install_odapi.sh"

PROTO = 'syntax = "proto2";\npackage object_detection.protos;\nmessage TrainEvalPipelineConfig { optional int32 x = 1; }\n'
SETUP = ("from setuptools import setup\n"
         "setup(name='object_detection', version='0.1', packages=['object_detection', 'object_detection.protos'])\n")


def _stand_in_archive(path: Path) -> Path:
    top = path.parent / "models" / "research"
    files = {
        "object_detection/__init__.py": "", "object_detection/protos/__init__.py": "",
        "object_detection/protos/pipeline.proto": PROTO, "object_detection/model_lib.py": "",
        "object_detection/exporter.py": "", "object_detection/packages/tf1/setup.py": SETUP,
        "object_detection/configs/tf1/tiny.config": "model { ssd { num_classes: 1 } }\n",
        "slim/README.md": "slim\n",
    }
    for name, text in files.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(text)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(top.parent, arcname="models")
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    purelib = subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _stand_in_archive(root / "models.tar.gz")
    return root


def test_relative_python_and_archive_as_documented(scratch):
    env = dict(os.environ, PYTHON="venv/bin/python", ODAPI_ARCHIVE="models.tar.gz", ODAPI_TF="1")
    result = subprocess.run(["bash", str(SCRIPT)], cwd=scratch, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "install_odapi: OK: object_detection (TF1)" in result.stdout
    installed = subprocess.run([str(scratch / "venv" / "bin" / "python"), "-c",
                                "import os, object_detection.protos.pipeline_pb2 as p; print(os.path.dirname(p.__file__))"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert installed.startswith(str(scratch / "venv"))               # the scratch venv's own, compiled protos
    assert (Path(installed).parent / "configs" / "tf1" / "tiny.config").exists()


def test_missing_archive_is_named(scratch):
    env = dict(os.environ, PYTHON="venv/bin/python", ODAPI_ARCHIVE="nope.tar.gz", ODAPI_TF="1")
    result = subprocess.run(["bash", str(SCRIPT)], cwd=scratch, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"ODAPI_ARCHIVE={scratch}/nope.tar.gz: no such file" in result.stderr
