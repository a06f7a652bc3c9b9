"""The data stage end to end on small real datasets: every bad-input case of issue 2, the outputs,
and that nothing is lost, silent or half-written."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from odstack import labelmap, tfrecord
from odstack.data.convert import DataSettings, convert
from odstack.errors import ConfigError, DatasetError, StrictModeError
from odstack.tfrecord import Keys
from tests.helpers import make_image

REPO = Path(__file__).resolve().parents[2]
HEADER = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]


def csv_dataset(root: Path, rows: list[list], images: dict[str, tuple[int, int]] | None = None) -> Path:
    """A TF-CSV dataset: images (name -> size) next to annotations.csv holding ``rows``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (width, height) in (images or {}).items():
        make_image(root / name, width, height)
    with open(root / "annotations.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return root


def run(src: Path, out: Path, **settings) -> dict:
    return convert(DataSettings(src=src, out=out, **settings)).report


def examples(out: Path) -> dict[str, dict]:
    return {e[Keys.FILENAME][0].decode(): e for e in tfrecord.read_examples(sorted(out.glob("*.record")))}


def issues_of(report: dict, reason: str) -> list[dict]:
    return [i for i in report["issues"] if i["reason"] == reason]


def test_outputs_layout_and_report(tmp_path):
    images = {f"img{i}.jpg": (100, 80) for i in range(10)}
    rows = [[n, 100, 80, "cat" if i % 2 else "dog", 10, 10, 50, 40] for i, n in enumerate(images)]
    src = csv_dataset(tmp_path / "ds", rows, images)
    report = run(src, tmp_path / "out", val_fraction=0.3, shards=2)
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["label_map.pbtxt", "report.html", "report.json", "report_samples", "tf_csv",
                     "train-00000-of-00002.record",
                     "train-00001-of-00002.record", "val-00000-of-00002.record", "val-00001-of-00002.record"]
    assert labelmap.read(out / "label_map.pbtxt") == {"cat": 1, "dog": 2}
    assert json.loads((out / "report.json").read_text()) == report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<td>cat</td>" in page and "10 images" in page
    assert report["splits"]["train"]["images"] == 7 and report["splits"]["val"]["images"] == 3
    assert {c: v["id"] for c, v in report["classes"].items()} == {"cat": 1, "dog": 2}
    with open(out / "tf_csv" / "val.csv", newline="") as handle:
        assert len(list(csv.reader(handle))) == 4  # header + 3 boxes
    got = examples(out)
    assert len(got) == 10
    example = got["img1.jpg"]
    assert example[Keys.XMIN] == [pytest.approx(0.1)] and example[Keys.YMAX] == [pytest.approx(0.5)]
    assert example[Keys.CLASS_TEXT] == [b"cat"] and example[Keys.CLASS_LABEL] == [1]
    assert example[Keys.ENCODED][0] == (src / "img1.jpg").read_bytes()  # stored as is, no re-encode


def test_same_seed_gives_identical_bytes_and_other_seed_other_split(tmp_path):
    images = {f"i{i}.jpg": (64, 48) for i in range(20)}
    src = csv_dataset(tmp_path / "ds", [[n, 64, 48, "a", 1, 1, 30, 30] for n in images], images)
    run(src, tmp_path / "a", seed=1)
    run(src, tmp_path / "b", seed=1, workers=1)
    run(src, tmp_path / "c", seed=2)
    for name in ("train-00000-of-00001.record", "val-00000-of-00001.record", "label_map.pbtxt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "val-00000-of-00001.record").read_bytes() != \
        (tmp_path / "c" / "val-00000-of-00001.record").read_bytes()


def test_bad_images_are_skipped_and_reported_with_location(tmp_path):
    src = tmp_path / "ds"
    good = {"good.jpg": (64, 48)}
    rows = [["good.jpg", 64, 48, "a", 1, 1, 30, 30], ["missing.jpg", 64, 48, "a", 1, 1, 30, 30],
            ["truncated.jpg", 64, 48, "a", 1, 1, 30, 30], ["text.jpg", 64, 48, "a", 1, 1, 30, 30],
            ["empty.jpg", 64, 48, "a", 1, 1, 30, 30], ["folder.jpg", 64, 48, "a", 1, 1, 30, 30]]
    csv_dataset(src, rows, good)
    full = make_image(tmp_path / "full.jpg", 400, 300).read_bytes()
    (src / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (src / "text.jpg").write_text("this is not an image")
    (src / "empty.jpg").write_bytes(b"")
    (src / "folder.jpg").mkdir()
    report = run(src, tmp_path / "out", val_fraction=0)
    skipped = {i["image"]: i for i in report["issues"] if i["action"] == "skipped_image"}
    assert skipped["missing.jpg"]["reason"] == "missing_image"
    assert skipped["missing.jpg"]["where"] == "annotations.csv:3"
    assert skipped["truncated.jpg"]["reason"] == "corrupt_image"
    assert skipped["text.jpg"]["reason"] == "corrupt_image"
    assert skipped["empty.jpg"]["reason"] == "corrupt_image"
    assert skipped["folder.jpg"]["reason"] == "unreadable_image"
    assert list(examples(tmp_path / "out")) == ["good.jpg"]
    assert report["totals"]["skipped_images"] == 5


def test_decode_verification_catches_what_the_fast_check_cannot(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["bad.png", 400, 300, "a", 1, 1, 30, 30]])
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "x.png")
    data = bytearray((tmp_path / "x.png").read_bytes())
    data[len(data) // 2:len(data) // 2 + 2000] = bytes(2000)  # damaged pixel data; still ends with IEND
    (src / "bad.png").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="every image was skipped"):
        run(src, tmp_path / "out", verify="decode")
    report = run(src, tmp_path / "out2", verify="fast", val_fraction=0)
    assert report["totals"]["images"] == 1  # the documented limit of the fast check


def test_box_geometry_problems(tmp_path):
    rows = [["a.jpg", 100, 80, "ok", 10, 10, 50, 40],
            ["a.jpg", 100, 80, "clip", -5, 10, 120, 40],      # overlaps: clipped
            ["a.jpg", 100, 80, "outside", 150, 10, 180, 40],  # entirely outside: skipped
            ["a.jpg", 100, 80, "zero", 10, 10, 10, 40],
            ["a.jpg", 100, 80, "inverted", 50, 10, 20, 40],
            ["a.jpg", 100, 80, "ok", 10, 10, 50, 40],         # exact duplicate of line 2
            ["a.jpg", 100, 80, "", 10, 10, 50, 40],           # empty label
            ["a.jpg", 100, 80, "bad", "x", 10, 50, 40]]       # not a number
    src = csv_dataset(tmp_path / "ds", rows, {"a.jpg": (100, 80)})
    report = run(src, tmp_path / "out", val_fraction=0)
    by_reason = {i["reason"]: i for i in report["issues"]}
    assert by_reason["box_clipped"]["action"] == "fixed" and by_reason["box_clipped"]["line"] == 3
    assert by_reason["box_outside_image"]["line"] == 4
    assert by_reason["zero_area_box"]["line"] == 5
    assert by_reason["inverted_box"]["line"] == 6
    assert by_reason["duplicate_box"]["line"] == 7
    assert by_reason["empty_label"]["line"] == 8
    assert by_reason["invalid_value"]["line"] == 9
    example = examples(tmp_path / "out")["a.jpg"]
    assert example[Keys.CLASS_TEXT] == [b"ok", b"clip"]
    assert example[Keys.XMIN] == [pytest.approx(0.1), 0.0] and example[Keys.XMAX][1] == 1.0


def test_unknown_label_against_given_label_map(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "cat", 1, 1, 30, 30], ["a.jpg", 64, 48, "cow", 2, 2, 20, 20]],
                      {"a.jpg": (64, 48)})
    labelmap.write(tmp_path / "lm.pbtxt", ["dog", "cat"])
    report = run(src, tmp_path / "out", label_map=tmp_path / "lm.pbtxt", val_fraction=0)
    assert [i["line"] for i in issues_of(report, "unknown_label")] == [3]
    assert examples(tmp_path / "out")["a.jpg"][Keys.CLASS_LABEL] == [2]  # ids from the given map
    assert labelmap.read(tmp_path / "out" / "label_map.pbtxt") == {"dog": 1, "cat": 2}


def test_negatives_are_kept_and_counted(tmp_path):
    images = {f"n{i}.jpg": (64, 48) for i in range(4)} | {f"p{i}.jpg": (64, 48) for i in range(6)}
    rows = [[n, 64, 48, "", "", "", "", ""] if n.startswith("n") else [n, 64, 48, "a", 1, 1, 30, 30] for n in images]
    report = run(csv_dataset(tmp_path / "ds", rows, images), tmp_path / "out", val_fraction=0.5)
    assert report["totals"]["negatives"] == 4
    assert report["splits"]["val"]["negatives"] >= 1 and report["splits"]["train"]["negatives"] >= 1
    assert sum(1 for e in examples(tmp_path / "out").values() if not e[Keys.CLASS_TEXT]) == 4


def test_unicode_and_spaces_in_names(tmp_path):
    name = "süß café/photo 1 (copy).jpg"
    src = csv_dataset(tmp_path / "ds", [[name, 64, 48, "кошка", 1, 1, 30, 30]], {name: (64, 48)})
    run(src, tmp_path / "out", val_fraction=0)
    example = examples(tmp_path / "out")[name]
    assert example[Keys.CLASS_TEXT] == ["кошка".encode()]
    assert "кошка" in (tmp_path / "out" / "label_map.pbtxt").read_text(encoding="utf-8")


def test_duplicate_entries_across_annotation_files(tmp_path):
    src = tmp_path / "voc"
    make_image(src / "images" / "a.jpg", 64, 48)
    for xml_name in ("a.xml", "a_copy.xml"):
        (src / "annotations").mkdir(parents=True, exist_ok=True)
        (src / "annotations" / xml_name).write_text(
            "<annotation><filename>a.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>"
            "<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>30</ymax></bndbox>"
            "</object></annotation>")
    report = run(src, tmp_path / "out", val_fraction=0)
    (dup,) = issues_of(report, "duplicate_entry")
    assert "a_copy.xml" in dup["where"] and "a.xml" in dup["message"]
    assert report["totals"]["images"] == 1


def test_duplicate_image_content_is_noted(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "x", 1, 1, 30, 30], ["b.jpg", 64, 48, "x", 1, 1, 30, 30]],
                      {"a.jpg": (64, 48)})
    shutil.copy(src / "a.jpg", src / "b.jpg")
    report = run(src, tmp_path / "out", val_fraction=0)
    (note,) = issues_of(report, "duplicate_image_content")
    assert note["image"] == "b.jpg" and "a.jpg" in note["message"]


def test_empty_dataset_and_everything_skipped(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        run(csv_dataset(tmp_path / "empty", []), tmp_path / "out")
    with pytest.raises(DatasetError, match="every image was skipped"):
        run(csv_dataset(tmp_path / "gone", [["nope.jpg", 1, 1, "a", 0, 0, 1, 1]]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wrong_and_unknown_format(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30]], {"a.jpg": (64, 48)})
    with pytest.raises(DatasetError, match="not a coco dataset; it looks like FORMAT=tf_csv"):
        run(src, tmp_path / "out", format="coco")
    with pytest.raises(DatasetError, match="did you mean FORMAT=yolo"):
        run(src, tmp_path / "out", format="yolov")
    with pytest.raises(DatasetError, match="no known annotation format"):
        run(tmp_path / "out_of_nothing" if (tmp_path / "out_of_nothing").mkdir() is None else None, tmp_path / "o")


def test_strict_fails_on_any_skip_and_writes_nothing(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30], ["a.jpg", 64, 48, "a", 9, 9, 9, 30]],
                      {"a.jpg": (64, 48)})
    with pytest.raises(StrictModeError, match=r"annotations.csv:3: .*zero width"):
        run(src, tmp_path / "out", strict=True)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))
    clip_only = csv_dataset(tmp_path / "ds2", [["a.jpg", 64, 48, "a", -1, 1, 30, 30]], {"a.jpg": (64, 48)})
    # min_examples=1: one box of class "a" is otherwise a (STRICT-failing) rare-class warning
    assert run(clip_only, tmp_path / "out", strict=True, val_fraction=0, min_examples=1)["totals"]["fixed_boxes"] == 1


def test_refuses_to_replace_foreign_or_overlapping_directories(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30]], {"a.jpg": (64, 48)})
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(ConfigError, match="not written by odstack"):
        run(src, foreign)
    with pytest.raises(ConfigError, match="overlap"):
        run(src, src / "records")
    with pytest.raises(ConfigError, match="overlap"):
        run(src, tmp_path)
    assert (foreign / "thesis.txt").read_text() == "precious" and (src / "a.jpg").exists()


def test_rerun_replaces_previous_output_completely(tmp_path):
    images = {f"i{i}.jpg": (64, 48) for i in range(6)}
    src = csv_dataset(tmp_path / "ds", [[n, 64, 48, "a", 1, 1, 30, 30] for n in images], images)
    run(src, tmp_path / "out", shards=3)
    run(src, tmp_path / "out", shards=1)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.record")) == \
        ["train-00000-of-00001.record", "val-00000-of-00001.record"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_split_source_honours_the_datasets_own_split(tmp_path):
    src = tmp_path / "ds"
    for split, names in (("train", ["a.jpg", "b.jpg"]), ("test", ["c.jpg"])):
        for name in names:
            make_image(src / name, 64, 48)
        with open(src / f"{split}_labels.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([HEADER] + [[n, 64, 48, "x", 1, 1, 30, 30] for n in names])
    report = run(src, tmp_path / "out", split="source")
    # test stays test (its own shards), never merged into val; split=source draws no val from train
    assert {name: s["images"] for name, s in report["splits"].items()} == {"train": 2, "val": 0, "test": 1}
    test = {e[Keys.FILENAME][0] for e in tfrecord.read_examples([tmp_path / "out" / "test-00000-of-00001.record"])}
    assert test == {b"c.jpg"}
    single = csv_dataset(tmp_path / "single", [["a.jpg", 64, 48, "x", 1, 1, 30, 30]], {"a.jpg": (64, 48)})
    with pytest.raises(ConfigError, match="states no train/val split"):
        run(single, tmp_path / "out2", split="source")


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "odstack", *args], capture_output=True, text=True, env=env,
                          cwd=kwargs.get("cwd", REPO), timeout=120)


def test_cli_errors_are_one_clear_message_without_traceback(tmp_path):
    result = _cli("data", f"src={tmp_path / 'nope'}", f"out={tmp_path / 'out'}")
    assert result.returncode == 2
    assert "dataset not found" in result.stderr and "Traceback" not in result.stderr
    result = _cli("data", "srcc=input/x")
    assert result.returncode == 2 and "did you mean src=?" in result.stderr
    result = _cli("data", "val_fraction=lots")
    assert result.returncode == 2 and "val_fraction='lots' is not a valid value" in result.stderr
    result = _cli("dta")
    assert result.returncode == 2 and "did you mean 'data'" in result.stderr
    help_text = _cli("data", "--help")
    assert help_text.returncode == 0 and "val_fraction: 0.2" in help_text.stdout


def test_cli_strict_exit_code(tmp_path):
    src = csv_dataset(tmp_path / "ds", [["a.jpg", 64, 48, "a", 1, 1, 30, 30], ["gone.jpg", 64, 48, "a", 1, 1, 9, 9]],
                      {"a.jpg": (64, 48)})
    result = _cli("data", f"src={src}", f"out={tmp_path / 'out'}", "strict=1")
    assert result.returncode == 3 and "missing_image" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_killed_run_never_leaves_records_that_look_complete(tmp_path):
    """SIGKILL in the middle of writing: the previous output stays whole, the new one never appears half."""
    small = csv_dataset(tmp_path / "small", [["a.jpg", 64, 48, "a", 1, 1, 30, 30]], {"a.jpg": (64, 48)})
    out = tmp_path / "out"
    assert _cli("data", f"src={small}", f"out={out}", "val_fraction=0").returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    images = {f"big{i}.png": (600, 600) for i in range(150)}  # PNG: slower, so the kill lands mid-write
    big = csv_dataset(tmp_path / "big", [[n, 600, 600, "a", 1, 1, 30, 30] for n in images], images)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "odstack", "data", f"src={big}", f"out={out}", "workers=1"],
                               env=env, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(tmp_path.glob(".out.tmp-*/*.record")):
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    if after != before:  # the run beat the kill: then it must be the complete new output
        report = json.loads(after["report.json"])
        assert report["totals"]["images"] == 150 and len(examples(out)) == 150
    else:
        assert len(examples(out)) == 1


def test_exif_rotated_image_box_lands_on_its_object(tmp_path):
    """The box is drawn on the displayed (rotated) image; the record's pixels must agree with it."""
    tf = pytest.importorskip("tensorflow")
    src = tmp_path / "ds"
    src.mkdir()
    raw = Image.new("RGB", (60, 40), (0, 0, 0))
    raw.paste((255, 255, 255), (0, 0, 20, 10))  # shown rotated 90° clockwise: x 30..40, y 0..20
    exif = Image.Exif()
    exif[0x0112] = 6
    raw.save(src / "phone.jpg", "JPEG", exif=exif.tobytes(), quality=95)
    csv_dataset(src, [["phone.jpg", 40, 60, "block", 30, 0, 40, 20]])
    report = run(src, tmp_path / "out", val_fraction=0)
    assert [i["reason"] for i in report["issues"]] == ["image_converted"]
    record = examples(tmp_path / "out")["phone.jpg"]
    pixels = tf.io.decode_image(record[Keys.ENCODED][0], channels=3).numpy()
    height, width = pixels.shape[:2]
    assert (width, height) == (record[Keys.WIDTH][0], record[Keys.HEIGHT][0]) == (40, 60)
    x0, x1 = round(record[Keys.XMIN][0] * width), round(record[Keys.XMAX][0] * width)
    y0, y1 = round(record[Keys.YMIN][0] * height), round(record[Keys.YMAX][0] * height)
    assert pixels[y0 + 2:y1 - 2, x0 + 2:x1 - 2].mean() > 220  # inside the box: the white block
    assert pixels[30:, :20].mean() < 40                      # elsewhere: black
