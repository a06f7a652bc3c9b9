"""odstack.log.LiveProgress in a log (no TTY, as under pytest and in CI): one line every log_every
seconds with step/total, the caller's fields, steps/s and ETA; a heartbeat naming what runs when
nothing advanced for `quiet` seconds. Real time passes (short waits); nothing asserts on durations."""
from __future__ import annotations

import logging
import time

from odstack.log import LiveProgress


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "odstack"]


def test_log_lines_with_step_loss_rate_eta_and_ap(caplog):
    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    progress = LiveProgress(total=100, desc="train[x]", initial=10, log_every=1.0, quiet=60)
    try:
        progress.update(20, rate=5.0, doing="training", loss=0.5, AP="n/a")
        time.sleep(1.2)
        progress.update(40, rate=5.0, doing="training", loss=0.25, AP=0.5)
        deadline = time.monotonic() + 10
        while not any("step 40/100" in m for m in _messages(caplog)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        progress.close()
    line = next(m for m in _messages(caplog) if "step 40/100" in m)
    assert line == "train[x] step 40/100  loss 0.250  AP 0.500  5.0 steps/s  ETA 0:12  [training]"


def test_heartbeat_names_what_runs_when_nothing_advances(caplog):
    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    progress = LiveProgress(total=50, desc="train[x]", log_every=1.0, quiet=1.0)
    try:
        progress.status("evaluating on val (step 0)")
        deadline = time.monotonic() + 10
        while not any("evaluating on val" in m for m in _messages(caplog)) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        progress.close()
    beat = next(m for m in _messages(caplog) if "evaluating on val" in m)
    assert beat.startswith("train[x]: evaluating on val (step 0) (") and beat.endswith("so far, step 0/50)")


def test_heartbeat_says_what_long_work_without_steps_is_doing_until_it_ends(caplog):
    from odstack.log import heartbeat

    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    from odstack.log import doing

    with heartbeat("tflite[int8]", every=0.3):
        doing("calibrating on 100 val images")                # said to the innermost heartbeat
        deadline = time.monotonic() + 10
        while not any("calibrating" in m for m in _messages(caplog)) and time.monotonic() < deadline:
            time.sleep(0.1)
    said = [m for m in _messages(caplog) if m.startswith("tflite[int8]")]
    assert said and said[-1].startswith("tflite[int8]: calibrating on 100 val images (0:0")
    time.sleep(0.8)                                   # the block ended: no beat after it
    assert [m for m in _messages(caplog) if m.startswith("tflite[int8]")] == said
