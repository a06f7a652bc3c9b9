#!/usr/bin/env python3
"""Print the default score threshold of a served model: the best-F1 threshold `make export` wrote to
``<serving_dir>/<model>/<highest version>/assets.extra/thresholds.json``; else the fallback given (or
nothing, so the client keeps its own default). Standard library only: `make predict` and the demo run it
with the system python.

    python3 scripts/served_threshold.py output/serving/detector [fallback]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def served_threshold(model_dir: Path) -> float | None:
    versions = sorted((p for p in Path(model_dir).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) \
        if Path(model_dir).is_dir() else []
    if not versions:
        return None
    path = versions[-1] / "assets.extra" / "thresholds.json"
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["score_threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    value = served_threshold(Path(sys.argv[1]))
    print(value if value is not None else (sys.argv[2] if len(sys.argv) == 3 else ""))
