"""run=auto and checkpoint=best|latest|<path>: the lookups train, eval and export share (odstack.train.run),
TF-free."""
from __future__ import annotations

from pathlib import Path

import pytest

from odstack.errors import ConfigError
from odstack.train.run import RunDir, resolve_run_name, select_checkpoint


def _checkpoint(directory: Path, step: int) -> Path:
    """TF's checkpoint files for one step, and the CheckpointState index naming it as the newest."""
    directory.mkdir(parents=True, exist_ok=True)
    prefix = directory / f"ckpt-{step}"
    for suffix in (".index", ".data-00000-of-00001"):
        prefix.with_name(prefix.name + suffix).write_bytes(b"x")
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{step}"\n'
                                          f'all_model_checkpoint_paths: "ckpt-{step}"\n')
    return prefix


def test_latest_and_explicit_paths(tmp_path):
    run = RunDir(tmp_path / "run")
    _checkpoint(run.path, 100)
    latest = _checkpoint(run.path, 200)
    assert select_checkpoint(run, "latest") == latest
    assert select_checkpoint(run, str(run.path / "ckpt-100")) == run.path / "ckpt-100"
    assert select_checkpoint(run, str(run.path / "ckpt-100.index")) == run.path / "ckpt-100"
    assert select_checkpoint(run, str(run.path)) == latest  # a directory: its newest
    with pytest.raises(ConfigError, match="checkpoint=.*ckpt-7: no such checkpoint") as error:
        select_checkpoint(run, str(run.path / "ckpt-7"))
    assert "best, latest or a checkpoint prefix" in error.value.hint


def test_best_is_the_evaluated_best_and_export_may_fall_back(tmp_path, caplog):
    run = RunDir(tmp_path / "run")
    first = _checkpoint(run.path, 100)
    latest = _checkpoint(run.path, 200)
    with pytest.raises(ConfigError, match="no evaluated best checkpoint"):
        select_checkpoint(run, "best")  # eval: an error, never a silent substitute
    assert select_checkpoint(run, "best", latest_if_no_best=True) == latest  # export: the latest, warned
    assert "no evaluated best checkpoint; using the latest" in caplog.text

    run.record_eval(100, first, {"AP": 0.5, "AP50": 0.9})
    run.record_eval(200, latest, {"AP": 0.3, "AP50": 0.6})
    best = select_checkpoint(run, "best")
    assert best == run.best_dir / "ckpt-100" and best.with_name("ckpt-100.index").exists()


def test_runs_without_checkpoints_say_train_first(tmp_path):
    run = RunDir(tmp_path / "fresh")
    run.path.mkdir()
    for which in ("latest", "best"):
        with pytest.raises(ConfigError, match="no checkpoint yet") as error:
            select_checkpoint(run, which, latest_if_no_best=True)
        assert "make train RUN=fresh" in error.value.hint


def test_run_auto_is_the_only_run_else_the_default_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_run_name("auto") == "retinanet_resnet50_fpn"  # nothing trained yet: the default run
    assert resolve_run_name("mine") == "mine"
    for name in ("a", "b"):
        (tmp_path / "output" / name).mkdir(parents=True)
        (tmp_path / "output" / name / "run.json").write_text("{}")
        if name == "a":
            assert resolve_run_name("auto") == "a"
    with pytest.raises(ConfigError, match="several runs in output/: a, b") as error:
        resolve_run_name("auto")
    assert "RUN=<name>" in error.value.hint
