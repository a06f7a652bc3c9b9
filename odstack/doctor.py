"""`make doctor`: what this machine (or image) can train with, on one screen, and the same as JSON.

TensorFlow's version and the CUDA/cuDNN it was built for, the GPUs it sees (and why none), nvidia-smi,
Docker and its runtimes, compose, which engines are installed, the download caches and free disk.

Standard library only at import: the host side of `make doctor` runs it with the system python3 (a
Docker host need not have the venvs); TensorFlow is asked only if it imports.

    python -m odstack doctor [json=true] [out=output/doctor.json]
    python3 -m odstack.doctor            (host side, no settings)
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ROOT = Path("~/.cache/odstack")  # what the Makefile mounts into the images as the download cache
TIMEOUT = 10


@dataclass
class DoctorSettings:
    """Settings of `make doctor` (section ``doctor`` of cfg/default.yaml)."""

    json: bool = False
    out: Path | None = Path("output/doctor.json")


def _command(*args: str) -> tuple[int, str]:
    """(exit code, stdout+stderr) of a command; 127 if it is not installed, 124 on timeout."""
    if not shutil.which(args[0]):
        return 127, f"{args[0]}: not found"
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return 124, f"{args[0]}: no answer in {TIMEOUT} s"
    return done.returncode, (done.stdout + done.stderr).strip()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorflow() -> dict[str, Any]:
    if importlib.util.find_spec("tensorflow") is None:
        return {"installed": False, "python": sys.executable}
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from odstack.train import devices

    build = dict(tf.sysconfig.get_build_info())
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"installed": True, "version": tf.__version__, "python": sys.executable,
            "cuda_build": bool(build.get("is_cuda_build")), "built_for_cuda": build.get("cuda_version"),
            "built_for_cudnn": build.get("cudnn_version"), "cuda_libraries": devices.cuda_libraries(build),
            "gpus": gpus, "why_no_gpu": None if gpus else devices.no_gpu_reason(tf)}


def nvidia_smi() -> dict[str, Any]:
    code, text = _command("nvidia-smi", "--query-gpu=index,name,driver_version,memory.total",
                          "--format=csv,noheader")
    if code:
        return {"found": code != 127, "gpus": [], "error": text}
    return {"found": True, "gpus": [line.strip() for line in text.splitlines() if line.strip()], "error": None}


def docker() -> dict[str, Any]:
    code, server = _command("docker", "version", "--format", "{{.Server.Version}}")
    if code == 127:
        return {"found": False, "server": None, "runtimes": [], "default_runtime": None, "nvidia": False,
                "error": server}
    if code:
        return {"found": True, "server": None, "runtimes": [], "default_runtime": None, "nvidia": False,
                "error": server.splitlines()[-1] if server else f"exit {code}"}
    _, runtimes = _command("docker", "info", "--format", "{{json .Runtimes}}")
    _, default = _command("docker", "info", "--format", "{{.DefaultRuntime}}")
    try:
        names = sorted(json.loads(runtimes))
    except ValueError:
        names = []
    return {"found": True, "server": server, "runtimes": names, "default_runtime": default or None,
            "nvidia": "nvidia" in names, "error": None}


def compose() -> dict[str, Any]:
    for command in (("docker-compose", "version", "--short"), ("docker", "compose", "version", "--short")):
        code, text = _command(*command)
        if code == 0:
            return {"found": True, "command": " ".join(command[:-2]), "version": text.splitlines()[-1]}
    return {"found": False, "command": None, "version": None}


def engines() -> dict[str, Any]:
    odapi = importlib.util.find_spec("object_detection")
    return {
        "tfvision": {"installed": importlib.util.find_spec("official") is not None,
                     "tf-models-official": _version("tf-models-official")},
        "odapi": {"installed": odapi is not None,
                  "location": str(Path(odapi.origin).parent) if odapi and odapi.origin else None,
                  "hint": None if odapi else "make venvs ODAPI=1 (or make image-odapi ODAPI=1)"},
    }


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)


def caches() -> dict[str, Any]:
    root = CACHE_ROOT.expanduser()
    entries = {}
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        count, size = _size(directory)
        entries[directory.name] = {"files": count, "bytes": size}
    return {"root": str(root), "exists": root.is_dir(), "entries": entries}


def disk() -> dict[str, Any]:
    places = {"repository": Path("."), "output": Path("output"), "cache": CACHE_ROOT.expanduser()}
    free = {}
    for name, path in places.items():
        probe = path
        while not probe.exists():
            probe = probe.parent
        free[name] = {"path": str(path), "free_bytes": shutil.disk_usage(probe).free}
    return free


def collect() -> dict[str, Any]:
    report = {"python": platform.python_version(), "platform": platform.platform(),
              "in_container": Path("/.dockerenv").exists(), "tensorflow": tensorflow(), "nvidia_smi": nvidia_smi(),
              "docker": docker(), "compose": compose(), "engines": engines(), "caches": caches(), "disk": disk()}
    tf = report["tensorflow"]
    report["trains_on"] = ("TensorFlow is not installed in this python" if not tf["installed"] else
                           f"{len(tf['gpus'])} GPU(s)" if tf["gpus"] else "CPU (GPUs: see above)")
    return report


def _gb(value: int) -> str:
    return f"{value / 1e9:.1f} GB"


def render(report: dict[str, Any]) -> str:
    tf, smi, dock, comp, eng = (report[k] for k in ("tensorflow", "nvidia_smi", "docker", "compose", "engines"))
    if tf["installed"]:
        libraries = ", ".join(tf["cuda_libraries"]) or "none installed"
        tf_line = (f"{tf['version']}, built for CUDA {tf['built_for_cuda']} / cuDNN {tf['built_for_cudnn']}; "
                   f"CUDA libraries: {libraries}" if tf["cuda_build"] else f"{tf['version']}, CPU-only build")
        gpu_line = ", ".join(tf["gpus"]) if tf["gpus"] else f"none: {tf['why_no_gpu']}"
    else:
        tf_line, gpu_line = f"not installed in {tf['python']}", "-"
    docker_line = ("not found" if not dock["found"] else f"installed, daemon: {dock['error']}" if dock["error"] else
                   f"server {dock['server']}, runtimes {', '.join(dock['runtimes'])} (default "
                   f"{dock['default_runtime']}); NVIDIA runtime: {'yes' if dock['nvidia'] else 'no'}")
    cache = report["caches"]
    cache_line = (", ".join(f"{name} {e['files']} files {_gb(e['bytes'])}" for name, e in cache["entries"].items())
                  or "empty") if cache["exists"] else "not created yet"
    rows = [
        ("python", f"{report['python']} ({tf['python']}){'  [in a container]' if report['in_container'] else ''}"),
        ("tensorflow", tf_line),
        ("GPUs (TF)", gpu_line),
        ("nvidia-smi", "; ".join(smi["gpus"]) if smi["gpus"] else (smi["error"] or "no GPU listed")),
        ("docker", docker_line),
        ("compose", f"{comp['command']} {comp['version']}" if comp["found"] else "not found"),
        ("tfvision", f"tf-models-official {eng['tfvision']['tf-models-official']}" if eng["tfvision"]["installed"]
         else "not installed"),
        ("odapi", f"OD API at {eng['odapi']['location']}" if eng["odapi"]["installed"]
         else f"not installed ({eng['odapi']['hint']})"),
        ("caches", f"{cache['root']}: {cache_line}"),
        ("disk free", ", ".join(f"{name} {_gb(d['free_bytes'])}" for name, d in report["disk"].items())),
        ("trains on", report["trains_on"]),
    ]
    return "odstack doctor\n" + "\n".join(f"  {name:<11} {value}" for name, value in rows)


def run(settings: DoctorSettings) -> dict[str, Any]:
    from odstack.fsio import write_json

    report = collect()
    if settings.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    if settings.out and str(settings.out) not in ("", "."):
        Path(settings.out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(settings.out), report)
        if not settings.json:
            print(f"  (JSON: {settings.out})")
    return report


if __name__ == "__main__":  # host side of `make doctor`: the system python3, standard library only
    print(render(collect()))
