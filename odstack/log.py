"""One package logger and one progress-bar helper for every stage.

``ODSTACK_VERBOSE=0`` keeps only warnings; ``ODSTACK_VERBOSE=2`` also echoes the raw output of the
tools odstack runs as subprocesses (model_main_tf2: always in their log files). Progress bars switch
themselves off when output is not a terminal (CI logs, docker without -t) so logs stay readable.

Long work is never silent for more than ~10 s: ``LiveProgress`` for work with steps (training),
``heartbeat`` for work without (export, conversion, calibration, evaluation), saying what it is doing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, TypeVar

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


def echo_subprocess_output() -> bool:
    """True if the raw output of the tools odstack runs should reach the terminal (ODSTACK_VERBOSE=2)."""
    return os.environ.get("ODSTACK_VERBOSE", "1") == "2"


def progress(iterable: Iterable[T] | None = None, **kwargs) -> tqdm:
    """A tqdm bar that is silent when stderr is not a terminal or logging is quiet."""
    disable = not sys.stderr.isatty() or not LOGGER.isEnabledFor(logging.INFO)
    return tqdm(iterable, disable=disable, leave=False, dynamic_ncols=True, **kwargs)


class LiveProgress:
    """A live progress line for long work (training): step/total, the caller's fields (loss, last AP),
    steps/s and ETA.

    On a terminal: a tqdm bar, redrawn on every update and at least every second. In a log (no TTY): one
    line every ``log_every`` seconds. Either way, when nothing advanced for ``quiet`` seconds a heartbeat
    says what is going on (``status()``: "evaluating on val", "building the training graph", ...), so the
    work never sits silent. ``rate`` is given by the caller (e.g. training time only, evaluations excluded).
    """

    def __init__(self, total: int, desc: str, initial: int = 0, log_every: float = 30.0, quiet: float = 10.0):
        import threading
        import time

        self._time = time.monotonic
        self.total, self.desc, self.step = int(total), desc, int(initial)
        self.log_every, self.quiet = float(log_every), float(quiet)
        self.fields: dict[str, str] = {}
        self.rate = float("nan")
        self.doing = "starting"
        self.tty = sys.stderr.isatty() and LOGGER.isEnabledFor(logging.INFO)
        self.bar = tqdm(total=self.total, initial=self.step, desc=desc, disable=not self.tty, leave=False,
                        dynamic_ncols=True, bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {postfix}")
        now = self._time()
        self.changed = self.logged = now
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="odstack-progress", daemon=True)
        self._thread.start()

    def update(self, step: int, rate: float | None = None, doing: str | None = None, **fields: Any) -> None:
        with self._lock:
            self.step = int(step)
            if rate is not None:
                self.rate = float(rate)
            if doing:
                self.doing = doing
            self.fields.update({k: (f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in fields.items()})
            self.changed = self._time()
            self._show(force_log=False)

    def status(self, doing: str) -> None:
        """What the work is doing now (said by the heartbeat if it takes a while)."""
        with self._lock:
            self.doing = doing

    def line(self) -> str:
        eta = (self.total - self.step) / self.rate if self.rate == self.rate and self.rate > 0 else None
        parts = [f"{self.desc} step {self.step}/{self.total}"] + [f"{k} {v}" for k, v in self.fields.items()]
        parts.append(f"{self.rate:.1f} steps/s" if self.rate == self.rate else "? steps/s")
        parts.append(f"ETA {_duration(eta)}" if eta is not None else "ETA ?")
        return "  ".join(parts)

    def _show(self, force_log: bool) -> None:
        now = self._time()
        if self.tty:
            self.bar.n = self.step
            self.bar.set_postfix_str(self.line().split("  ", 1)[-1] + f"  [{self.doing}]", refresh=True)
        elif force_log or now - self.logged >= self.log_every:
            LOGGER.info("%s  [%s]", self.line(), self.doing)
            self.logged = now

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                now = self._time()
                if self.tty:
                    self._show(force_log=False)  # the elapsed time and [doing] keep moving
                    continue
                silent = now - self.changed
                if self.changed > self.logged and now - self.logged >= self.log_every:
                    self._show(force_log=True)
                elif silent >= self.quiet and now - self.logged >= max(self.quiet, self.log_every):
                    LOGGER.info("%s: %s (%s so far, step %d/%d)", self.desc, self.doing, _duration(silent),
                                self.step, self.total)
                    self.logged = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.bar.close()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Heartbeat:
    """What long work without steps is doing, said every ``every`` seconds while it lasts (see heartbeat)."""

    def __init__(self, what: str, every: float = 10.0):
        self.what, self.every = what, float(every)
        self.doing = ""
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="odstack-heartbeat", daemon=True)

    def status(self, doing: str) -> None:
        """What the work is doing now (said by the next beat)."""
        self.doing = doing

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            doing = f": {self.doing}" if self.doing else ""
            LOGGER.info("%s%s (%s so far)", self.what, doing, _duration(time.monotonic() - self.started))


_BEATING: list[Heartbeat] = []   # the heartbeats running now, innermost last (what doing() talks to)


@contextlib.contextmanager
def heartbeat(what: str, every: float = 10.0) -> Iterator[Heartbeat]:
    """``with heartbeat("tflite[int8]") as beat: beat.status("calibrating on 100 val images")``: one log
    line every ``every`` seconds until the block ends, so long work never looks hung."""
    beat = Heartbeat(what, every)
    beat.start()
    _BEATING.append(beat)
    try:
        yield beat
    finally:
        _BEATING.remove(beat)
        beat.stop()


def doing(what: str) -> None:
    """Tell the innermost running heartbeat what the work does now (the CLI runs export, conversion and
    parity under one, so code deep inside them can say it without being handed the heartbeat)."""
    if _BEATING:
        _BEATING[-1].status(what)
