"""The Makefile's front door: unknown command-line variables stop make before anything runs, and the
exit code of a stage reaches the shell as README documents. Runs the real `make` on the repo Makefile."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def _make(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-f", str(REPO / "Makefile"), *args, "RUNNER=local"],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_typo_of_a_variable_fails_with_did_you_mean_before_anything_runs(tmp_path):
    # `make train BACH=4` used to train for minutes with batch 8 and exit 0; -n shows nothing would run
    result = _make("-n", "train", "BACH=4", "STEPS=3")
    assert result.returncode != 0
    assert "BACH" in result.stderr and "did you mean BATCH?" in result.stderr
    assert "odstack train" not in result.stdout  # nothing of the recipe was even printed


def test_lower_case_spelling_suggests_the_variable():
    result = _make("-n", "eval", "run=demo")
    assert result.returncode != 0 and "did you mean RUN?" in result.stderr


def test_every_documented_variable_and_makes_own_are_accepted():
    documented = re.findall(r"^([A-Z_]+) \?=.*## ", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert len(documented) > 30
    own = ["MAKEFLAGS=", "SHELL=bash", "CC=cc"]
    result = _make("-n", "help", *(f"{name}={'local' if name == 'RUNNER' else ''}" for name in documented), *own)
    assert result.returncode == 0, result.stderr


def test_no_suggestion_for_a_name_nothing_resembles():
    result = _make("-n", "help", "ZQXW=1")
    assert result.returncode != 0 and "unknown variable ZQXW" in result.stderr


def test_strict_exit_code_3_is_in_makes_error_line(tmp_path):
    """make itself exits 2 for any failed recipe (GNU make has no way to pass a recipe's code on); the
    stage's own code is the `Error 3` make prints, as README's exit-code table says."""
    src = tmp_path / "ds"
    (src / "images").mkdir(parents=True)
    from tests.helpers import make_image

    make_image(src / "images" / "a.jpg")
    (src / "classes.txt").write_text("cat\n")
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")  # class 7: skipped
    result = _make("data", f"SRC={src}", f"OUT={tmp_path / 'out'}", "STRICT=1", "FORMAT=yolo", cwd=REPO)
    assert result.returncode == 2
    assert re.search(r"Makefile:\d+: data\] Error 3", result.stderr), result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_predict_and_demo_default_to_the_served_models_best_f1_threshold(tmp_path):
    import json
    import sys

    model = tmp_path / "serving" / "detector"
    for version, threshold in ((2, 0.35), (10, 0.42)):  # versions compare as numbers: 10 is the newest
        (model / str(version) / "assets.extra").mkdir(parents=True)
        (model / str(version) / "assets.extra" / "thresholds.json").write_text(
            json.dumps({"score_threshold": threshold, "source": f"best F1 on val, step {version}"}))
    script = [sys.executable, str(REPO / "scripts" / "served_threshold.py")]
    assert subprocess.run(script + [str(model)], capture_output=True, text=True).stdout.strip() == "0.42"
    missing = tmp_path / "serving" / "other"
    assert subprocess.run(script + [str(missing)], capture_output=True, text=True).stdout.strip() == ""
    assert subprocess.run(script + [str(missing), "0.3"], capture_output=True, text=True).stdout.strip() == "0.3"
    recipe = _make("-n", "predict", "IMAGE=photo.jpg").stdout
    assert "scripts/served_threshold.py output/serving/detector" in recipe
    assert 'threshold="0.5"' in _make("-n", "predict", "IMAGE=photo.jpg", "THRESHOLD=0.5").stdout
    assert "scripts/served_threshold.py" in (REPO / "scripts" / "demo.sh").read_text()
