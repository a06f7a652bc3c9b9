"""Files and directories the stages write: names that become directories (runs, served models) are checked
once here, and writes never leave half a file or directory behind (written beside the target, then
renamed: one atomic step on one filesystem)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from odstack.errors import ConfigError


def check_name(value: str, key: str) -> str:
    """``value`` if it is safe as one directory name (run, model), else a ConfigError naming ``key``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value or ""):
        raise ConfigError(f"{key}={value!r}: use letters, digits, '.', '_' and '-' only")
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """``path`` holds ``text`` or what it held before, never a part of it (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """JSON (indented, UTF-8, trailing newline), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def replace_dir(staged: Path, destination: Path) -> None:
    """Move the finished directory ``staged`` to ``destination``; an existing ``destination`` is renamed
    aside first and removed after, so the old one stays whole until the new one is in place."""
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    if destination.exists():
        os.replace(destination, old)
    os.replace(staged, destination)
    shutil.rmtree(old, ignore_errors=True)
