#!/usr/bin/env python3
"""TF Serving's gRPC Python modules without TensorFlow.

`tensorflow-serving-api` depends on the whole `tensorflow` package (~1.8 GB installed), although a gRPC
client only needs generated protobuf code. This script downloads the two pinned wheels
(`pip download --no-deps`), follows the imports of the gRPC stubs the client uses, and extracts only
those `*_pb2.py` / `*_pb2_grpc.py` files (tensorflow_serving/**, tensorflow/core/**, tsl/**, xla/**
as the imports require) plus `__init__.py` files (an empty `tensorflow/__init__.py`) into TARGET.

Used identically by the client image (a build stage) and by the local venv (TARGET = its
site-packages):

    python3 scripts/client/extract_protos.py --target .venv/client/lib/python3.11/site-packages --check

Only the standard library is needed (plus pip to download, and grpcio/protobuf for --check).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

TF_VERSION = "2.20.0"
TFS_VERSION = "2.20.0"
# The generated code is pure Python and identical on every platform: always fetch the same wheel.
WHEELS = {
    "tensorflow_serving_api": (f"tensorflow-serving-api=={TFS_VERSION}",
                               f"tensorflow_serving_api-{TFS_VERSION}-py2.py3-none-any.whl",
                               "35df992746c4bf6b43cba3ec03f51b497c73c9153a6ba3a8ff44c2f8b053bb9d"),
    "tensorflow": (f"tensorflow=={TF_VERSION}",
                   f"tensorflow-{TF_VERSION}-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                   "481499fd0f824583de8945be61d5e827898cdaa4f5ea1bc2cc28ca2ccff8229e"),
}
PIP_PLATFORM = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp",
                "--only-binary=:all:"]
# The stubs the client calls; everything else is pulled in by their imports.
ROOTS = ("tensorflow_serving/apis/prediction_service_pb2_grpc.py",
         "tensorflow_serving/apis/model_service_pb2_grpc.py")
TOP_LEVEL = ("tensorflow_serving", "tensorflow", "tsl", "xla")
IMPORT_RE = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+(\w+)|import\s+([\w.]+))", re.MULTILINE)
MANIFEST = "odstack_protos.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(wheel_dir: Path, verify_hashes: bool = True) -> list[Path]:
    """The pinned wheels in ``wheel_dir`` (downloaded once, then reused), hash-checked."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec, filename, expected in WHEELS.values():
        path = wheel_dir / filename
        if not path.is_file():
            print(f"extract_protos: pip download {spec}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
                            *PIP_PLATFORM, "-d", str(wheel_dir), spec], check=True)
        if not path.is_file():
            sys.exit(f"extract_protos: pip did not produce {path}")
        if verify_hashes and sha256(path) != expected:
            sys.exit(f"extract_protos: sha256 mismatch for {path} (delete it and retry, or pass --no-verify-hashes)")
        paths.append(path)
    return paths


def imports_of(source: str) -> set[str]:
    """Repository-relative module files (a/b/c.py) imported by ``source`` from the proto trees."""
    found = set()
    for from_module, name, plain in IMPORT_RE.findall(source):
        module = f"{from_module}.{name}" if from_module else plain
        if module.split(".")[0] in TOP_LEVEL:
            found.add(module.replace(".", "/") + ".py")
    return found


def extract(wheels: list[Path], target: Path) -> list[str]:
    members: dict[str, tuple[zipfile.ZipFile, str]] = {}
    archives = [zipfile.ZipFile(path) for path in wheels]
    for archive in archives:
        for name in archive.namelist():
            if name.endswith(".py") and name.split("/")[0] in TOP_LEVEL:
                members.setdefault(name, (archive, name))
    todo, seen = list(ROOTS), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in members:
            sys.exit(f"extract_protos: {name} is imported but in neither wheel")
        seen.add(name)
        archive, member = members[name]
        todo.extend(imports_of(archive.read(member).decode("utf-8")) - seen)
    packages = {str(Path(name).parent) for name in seen}
    packages |= {str(parent) for package in packages for parent in Path(package).parents if str(parent) != "."}
    for name in sorted(seen):
        out = target / name
        out.parent.mkdir(parents=True, exist_ok=True)
        archive, member = members[name]
        out.write_bytes(archive.read(member))
    for package in sorted(packages):
        init = target / package / "__init__.py"
        if not init.exists():  # empty on purpose: `tensorflow` here is only a namespace for its protos
            init.write_text("")
    for archive in archives:
        archive.close()
    return sorted(seen)


def check(target: Path) -> None:
    """Import the stubs from ``target`` in a fresh interpreter and prove TensorFlow's runtime is absent."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tensorflow_serving.apis import prediction_service_pb2_grpc, model_service_pb2_grpc, predict_pb2;"
        "import tensorflow;"
        "assert not hasattr(tensorflow, 'constant'), 'a TensorFlow runtime is importable';"
        "import importlib.util as u; assert u.find_spec('tensorflow.python') is None, 'tensorflow.python present';"
        "print('extract_protos: check ok:', predict_pb2.PredictRequest.DESCRIPTOR.full_name)"
    )
    subprocess.run([sys.executable, "-c", code, str(target)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True, help="directory to extract into (e.g. site-packages)")
    parser.add_argument("--wheel-dir", type=Path, default=Path(".build/wheels"), help="download cache")
    parser.add_argument("--no-verify-hashes", action="store_true", help="skip the sha256 check of the wheels")
    parser.add_argument("--check", action="store_true", help="import the stubs afterwards (needs grpcio, protobuf)")
    args = parser.parse_args(argv)

    wheels = download(args.wheel_dir, verify_hashes=not args.no_verify_hashes)
    args.target.mkdir(parents=True, exist_ok=True)
    files = extract(wheels, args.target)
    (args.target / MANIFEST).write_text(json.dumps(
        {"tensorflow": TF_VERSION, "tensorflow-serving-api": TFS_VERSION, "files": files}, indent=1) + "\n")
    print(f"extract_protos: {len(files)} modules -> {args.target}", file=sys.stderr)
    if args.check:
        check(args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
