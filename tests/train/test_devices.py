"""GPUS=auto|none|all|ids: which devices training uses, said loudly, and the cause when no GPU is seen.

No GPU exists on our machines or in CI: the decision logic is checked with fake device lists (only here,
for that reason); the real TensorFlow device query runs too and must give the CPU answer with its cause.
"""
from __future__ import annotations

import logging

import pytest

from odstack.errors import ConfigError
from odstack.train import devices

FAKE_TWO = ["/physical_device:GPU:0", "/physical_device:GPU:1"]  # stand-in: no GPU here


def test_auto_without_gpu_trains_on_cpu_and_says_why():
    ids, message = devices.choose("auto", [], "no NVIDIA driver is visible")
    assert ids == [] and message == ("training on CPU: no GPU visible (no NVIDIA driver is visible) — "
                                     "run `make doctor`")


@pytest.mark.parametrize("wanted", ["all", "0", "0,1"])
def test_asking_for_gpus_without_any_fails_with_the_cause(wanted):
    with pytest.raises(ConfigError, match="TensorFlow sees no GPU: no NVIDIA driver") as error:
        devices.choose(wanted, [], "no NVIDIA driver is visible")
    assert "make doctor" in str(error.value) and "GPUS=" in str(error.value)


def test_fake_gpus_auto_all_ids_and_none():
    """Fake device names (no GPU here): auto/all take every GPU with MirroredStrategy, ids pick some."""
    ids, message = devices.choose("auto", FAKE_TWO)
    assert ids == [0, 1] and "2 GPUs" in message and "MirroredStrategy" in message
    assert devices.choose("all", FAKE_TWO)[0] == [0, 1]
    ids, message = devices.choose("1", FAKE_TWO)
    assert ids == [1] and message == "training on GPU 1: /physical_device:GPU:1"
    assert devices.choose("none", FAKE_TWO) == ([], "training on CPU (gpus=none)")
    with pytest.raises(ConfigError, match="sees 2 GPU"):
        devices.choose("0,2", FAKE_TWO)
    with pytest.raises(ConfigError, match="must be auto, none, all"):
        devices.choose("gpu0", FAKE_TWO)


def test_the_real_device_query_here_says_cpu_and_why(caplog):
    from odstack.tfruntime import import_tensorflow
    from odstack.train.engines import tfvision

    logging.getLogger("odstack").propagate = True
    caplog.set_level("INFO", logger="odstack")
    tf = import_tensorflow()
    assert tf.config.list_physical_devices("GPU") == []  # this test is for machines without a GPU
    reason = devices.no_gpu_reason(tf)
    assert "no NVIDIA driver is visible" in reason
    _, device = tfvision._strategy("auto")
    assert device == "CPU"
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"training on CPU: no GPU visible ({reason})" in r.getMessage() for r in warned)
    with pytest.raises(ConfigError, match="gpus=all, but TensorFlow sees no GPU"):
        tfvision._strategy("all")
