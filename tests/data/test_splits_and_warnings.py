"""A dataset's own split is kept by default (test as its own shards); warnings about the split and the
classes are in the summary and the report, and fail the run under STRICT=1 (issue 9)."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from odstack import tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.errors import StrictModeError
from odstack.tfrecord import Keys
from tests.data.test_convert import HEADER
from tests.helpers import make_image


def run(src: Path, out: Path, **settings) -> dict:
    return convert(DataSettings(src=src, out=out, **settings)).report


def split_csvs(root: Path, splits: dict[str, list[tuple[str, str]]], size=(64, 48)) -> Path:
    """<split>_labels.csv per split, rows (image name, class); images of ``size``."""
    for split, rows in splits.items():
        for name, _ in rows:
            if not (root / name).exists():
                make_image(root / name, *size)
        with open(root / f"{split}_labels.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([HEADER] + [[n, *size, c, 1, 1, 30, 30] for n, c in rows])
    return root


def names(path: Path) -> set[str]:
    return {e[Keys.FILENAME][0].decode() for e in tfrecord.read_examples(sorted(path.parent.glob(path.name)))}


def test_own_split_is_kept_by_default_and_test_gets_its_own_shards(tmp_path, caplog):
    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "a") for i in range(4)],
                                       "val": [("v.jpg", "a")], "test": [("x.jpg", "a")]})
    with caplog.at_level(logging.INFO, logger="odstack"):
        report = run(src, tmp_path / "out", min_examples=1)
    out = tmp_path / "out"
    assert names(out / "test-*.record") == {"x.jpg"} and names(out / "val-*.record") == {"v.jpg"}
    assert len(names(out / "train-*.record")) == 4
    assert {k: v["images"] for k, v in report["splits"].items()} == {"train": 4, "val": 1, "test": 1}
    assert report["split"]["mode"] == "source" and "own split" in caplog.text
    assert report["classes"]["a"]["boxes"]["test"] == 1
    assert (out / "tf_csv" / "test.csv").is_file()
    assert "test" in caplog.text.split("classes")[0]  # a test row in the summary
    assert "<td>test</td>" in (out / "report.html").read_text(encoding="utf-8")


def test_split_random_resplits_everything_into_train_and_val(tmp_path):
    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "a") for i in range(8)], "test": [("x.jpg", "a")]})
    report = run(src, tmp_path / "out", split="random", val_fraction=0.25, min_examples=1)
    assert set(report["splits"]) == {"train", "val"} and report["totals"]["images"] == 9
    assert report["split"]["mode"] == "random"
    assert not list((tmp_path / "out").glob("test-*"))


def test_train_and_test_only_draws_val_from_train_keeping_test(tmp_path):
    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "a") for i in range(10)], "test": [("x.jpg", "a")]})
    report = run(src, tmp_path / "out", val_fraction=0.2, min_examples=1)
    assert {k: v["images"] for k, v in report["splits"].items()} == {"train": 8, "val": 2, "test": 1}
    assert names(tmp_path / "out" / "test-*.record") == {"x.jpg"}
    assert "val is drawn from" in report["split"]["description"]


def test_strict_source_split_without_val_warns_val_is_empty(tmp_path):
    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "a") for i in range(3)], "test": [("x.jpg", "a")]})
    report = run(src, tmp_path / "out", split="source", min_examples=1)
    assert [w["kind"] for w in report["warnings"]] == ["val_empty"]
    with pytest.raises(StrictModeError, match="val is empty"):
        run(src, tmp_path / "out2", split="source", strict=True, min_examples=1)


def test_class_warnings(tmp_path, caplog):
    rows = {"train": [(f"a{i}.jpg", "common") for i in range(22)] + [("r.jpg", "rare"), ("o.jpg", "only_train")],
            "val": [("va.jpg", "common"), ("vr.jpg", "rare")]}
    src = split_csvs(tmp_path / "ds", rows)
    with caplog.at_level(logging.INFO, logger="odstack"):
        report = run(src, tmp_path / "out", min_examples=5)
    kinds = {(w["kind"], w.get("class")) for w in report["warnings"]}
    assert ("val_missing_class", "only_train") in kinds
    assert ("rare_class", "rare") in kinds and ("rare_class", "only_train") in kinds
    assert ("rare_class", "common") not in kinds
    assert ("class_imbalance", None) in kinds
    assert "only_train" in caplog.text and "warnings" in caplog.text
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["warnings"] == report["warnings"]
    assert "only_train" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_very_different_image_sizes_warn(tmp_path):
    src = split_csvs(tmp_path / "ds", {"train": [("small.jpg", "a")]}, size=(40, 30))
    make_image(src / "big.jpg", 400, 300)
    with open(src / "train_labels.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["big.jpg", 400, 300, "a", 1, 1, 30, 30])
    report = run(src, tmp_path / "out", val_fraction=0, min_examples=1)
    (warning,) = report["warnings"]
    assert warning["kind"] == "image_sizes_vary" and "40x30" in warning["message"] and "400x300" in warning["message"]


def test_report_page_has_axes_image_sizes_and_sample_mosaic_beside_it(tmp_path):
    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "cat" if i % 2 else "dog") for i in range(6)]})
    report = run(src, tmp_path / "out", val_fraction=0, min_examples=1)
    out = tmp_path / "out"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "box width / image width" in page and "box height / image height" in page
    assert "Image sizes" in page and "64&ndash;64 px" in page
    assert report["image_size_histogram"] == [{"from": 64, "to": 64, "images": 6}]
    assert set(report["samples"]) == {"cat", "dog"} and len(report["samples"]["cat"]) == 3
    for path in report["samples"]["cat"] + report["samples"]["dog"]:
        assert (out / path).is_file() and f"src='{path}'" in page
    from PIL import Image
    with Image.open(out / report["samples"]["cat"][0]) as thumb:
        assert max(thumb.size) == 240
        rgb = thumb.convert("RGB")
        # the box's left edge (x = 1 px of 64, scaled 3.75x) is drawn pure red over the (200, 30, 30) background
        assert max(rgb.getpixel((x, 60))[0] for x in range(3, 7)) > 235
        assert rgb.getpixel((20, 150))[0] < 215


def test_training_side_still_loads_an_output_with_test_shards(tmp_path):
    from odstack.train.run import DatasetInfo

    src = split_csvs(tmp_path / "ds", {"train": [(f"t{i}.jpg", "a") for i in range(4)],
                                       "val": [("v.jpg", "a")], "test": [("x.jpg", "a")]})
    run(src, tmp_path / "out", min_examples=1)
    info = DatasetInfo.load(tmp_path / "out")
    assert [p.name for p in info.train_shards] == ["train-00000-of-00001.record"]
    assert [p.name for p in info.val_shards] == ["val-00000-of-00001.record"]
    assert (info.train_images, info.val_images) == (4, 1)
