#!/usr/bin/env bash
# `make check-gpu-requirements`: does the GPU variant (dockerfiles/requirements/odapi-gpu.txt) resolve from
# PyPI for this Python, with the CUDA/cuDNN wheels TensorFlow wants? No GPU and nothing installed: pip's
# resolver in --dry-run mode, in a throw-away venv, writing its --report. ~1 min, metadata only.
#   PYTHON=python3.11 REPORT=output/gpu-requirements.json bash scripts/gpu/check_requirements.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
REQUIREMENTS=${REQUIREMENTS:-dockerfiles/requirements/odapi-gpu.txt}
REPORT=${REPORT:-output/gpu-requirements.json}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$(dirname "$REPORT")"
"$PYTHON" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed \
  --report "$REPORT" -r "$REQUIREMENTS"
"$scratch/venv/bin/python" - "$REPORT" "$REQUIREMENTS" <<'PY'
import json, re, sys
report, requirements = sys.argv[1], sys.argv[2]
install = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(report))["install"]}
pin = re.search(r"^tensorflow\[and-cuda\]==(\S+)", open(requirements).read(), re.M).group(1)
problems = []
if install.get("tensorflow") != pin:
    problems.append(f"tensorflow resolves to {install.get('tensorflow')}, not {pin}")
for wheel in ("nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12"):
    if wheel not in install:
        problems.append(f"{wheel} missing: the and-cuda extra did not resolve")
if problems:
    sys.exit("check-gpu-requirements: " + "; ".join(problems))
cuda = {k: v for k, v in install.items() if k.startswith("nvidia-")}
print(f"check-gpu-requirements: {requirements} resolves: {len(install)} packages, tensorflow {pin}, "
      f"cuDNN {cuda['nvidia-cudnn-cu12']}, CUDA runtime {cuda['nvidia-cuda-runtime-cu12']} "
      f"({len(cuda)} NVIDIA wheels); report: {report}")
PY
