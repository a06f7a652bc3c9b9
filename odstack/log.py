"""One package logger and one progress-bar helper for every stage.

``ODSTACK_VERBOSE=0`` keeps only warnings; progress bars switch themselves off when output is not a
terminal (CI logs, docker without -t) so logs stay readable.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

LOGGER = logging.getLogger("odstack")


def setup_logging() -> None:
    verbose = os.environ.get("ODSTACK_VERBOSE", "1") not in ("0", "false", "False")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(logging.INFO if verbose else logging.WARNING)
    LOGGER.propagate = False


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """A tqdm bar that is silent when stderr is not a terminal or logging is quiet."""
    disable = not sys.stderr.isatty() or not LOGGER.isEnabledFor(logging.INFO)
    return tqdm(iterable, disable=disable, leave=False, dynamic_ncols=True, **kwargs)
