"""Which devices a run trains on (``gpus=auto|none|all|0,1``), said loudly, with the cause when no GPU is seen.

:func:`choose` is the decision alone (device names in, device indices and the sentence out), so it can be
checked without a GPU; :func:`no_gpu_reason` asks TensorFlow and the machine why no GPU is visible (the
same answers `make doctor` gives).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from odstack.errors import ConfigError

DOCTOR = "run `make doctor`"


def no_gpu_reason(tf) -> str:
    """Why TensorFlow sees no GPU here: every cause found, most basic first."""
    info = dict(tf.sysconfig.get_build_info())
    causes = []
    if not info.get("is_cuda_build"):
        causes.append("this TensorFlow is a CPU-only build")
    elif not cuda_libraries(info):
        causes.append(f"TensorFlow is built for CUDA {info.get('cuda_version', '?')} / cuDNN "
                      f"{info.get('cudnn_version', '?')} but those libraries are not installed (the GPU variant "
                      "installs them: `make venvs GPU=1`, `make image-odapi GPU=1`)")
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        causes.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} hides every GPU")
    if not (shutil.which("nvidia-smi") or Path("/proc/driver/nvidia/version").exists()):
        where = (" (in a container: the host needs the NVIDIA container toolkit and the container --gpus)"
                 if Path("/.dockerenv").exists() else "")
        causes.append(f"no NVIDIA driver is visible (no nvidia-smi, no /proc/driver/nvidia){where}")
    return "; ".join(causes) or ("a driver and the CUDA libraries are present but TensorFlow cannot use them "
                                 "(driver older than the CUDA version TensorFlow was built for?)")


def cuda_libraries(build: dict | None = None) -> list[str]:
    """The CUDA runtime/cuDNN TensorFlow needs (the major versions it was built for), where found: NVIDIA's
    PyPI wheels (tensorflow[and-cuda]) or system libraries. Empty: TensorFlow cannot use a GPU here."""
    import ctypes
    import importlib.util

    found = []
    if importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.cudnn") is not None:
        found.append("pip nvidia-* wheels")
    build = build or {}
    cuda = str(build.get("cuda_version") or "12").split(".")[0]
    cudnn = str(build.get("cudnn_version") or "9").split(".")[0]
    system = []
    for name in (f"libcudart.so.{cuda}", f"libcudnn.so.{cudnn}"):
        try:
            ctypes.CDLL(name)
            system.append(name)
        except OSError:
            pass
    if len(system) == 2:
        found.append(f"system {' + '.join(system)}")
    return found


def choose(wanted: str | None, found: Sequence[str], reason: str = "", doing: str = "training") -> tuple[list[int], str]:
    """Indices into ``found`` (the GPUs TensorFlow lists) to use for ``gpus=wanted``, and what to say.

    auto: every GPU, else the CPU with a warning naming ``reason``; none: the CPU; all or ids: those GPUs,
    an error with the cause when there are none (or fewer than asked for).
    """
    setting = str(wanted or "auto").strip().lower()
    if setting == "none":
        return [], f"{doing} on CPU (gpus=none)"
    if setting in ("auto", "all"):
        ids = list(range(len(found)))
        if not ids and setting == "all":
            raise ConfigError(f"gpus=all, but TensorFlow sees no GPU: {reason}",
                              hint=f"{DOCTOR} for the details, or pass GPUS=auto / GPUS=none to train on the CPU")
        if not ids:
            return [], f"{doing} on CPU: no GPU visible ({reason}) — {DOCTOR}"
    else:
        try:
            ids = [int(part) for part in setting.split(",") if part.strip()]
        except ValueError:
            ids = []
        if not ids or any(i < 0 for i in ids):
            raise ConfigError(f"gpus={wanted!r} must be auto, none, all or device ids like 0,1")
        if not found:
            raise ConfigError(f"gpus={wanted}: TensorFlow sees no GPU: {reason}",
                              hint=f"{DOCTOR} for the details, or pass GPUS=none to train on the CPU")
        missing = [i for i in ids if i >= len(found)]
        if missing:
            raise ConfigError(f"gpus={wanted}: TensorFlow sees {len(found)} GPU(s) (ids 0-{len(found) - 1}), "
                              f"not {', '.join(map(str, missing))}", hint=f"{DOCTOR} lists them")
    names = ", ".join(f"{i}: {found[i]}" for i in ids)
    if len(ids) > 1:
        return ids, (f"{doing} on {len(ids)} GPUs ({names}): MirroredStrategy, each step's batch split "
                     f"across them")
    return ids, f"{doing} on GPU {names}"
