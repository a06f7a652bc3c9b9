"""The data benchmark's machinery at a tiny size, so `make bench` cannot rot (no timing asserts)."""
from __future__ import annotations

import json

from bench import data_bench


def test_data_bench_small_run(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Train stage\n\nkept as it is\n", encoding="utf-8")
    out = tmp_path / "data.json"

    results = data_bench.main(["--images", "120", "--repeat", "1", "--skip-classic",
                               "--workdir", str(tmp_path / "work"), "--json", str(out), "--docs", str(docs)])

    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["dataset"]["images"] == 120
    assert {"cores", "python", "versions"} <= set(saved["machine"])
    assert set(saved["contenders"]) == {"cp", "odstack", "odstack_decode", "odstack_workers1"}
    for row in [*saved["contenders"].values(), *saved["memory"].values()]:
        assert row["repeats"] == 1
        for key in ("seconds", "images_per_second", "mb_per_second", "peak_rss_mib", "peak_pss_mib"):
            assert row[key] > 0, (row["label"], key)
    # every odstack run was checked to hold one example per image (main() fails otherwise)
    assert saved["contenders"]["odstack"]["images"] == 120
    assert saved["memory"]["odstack_quarter"]["images"] == 30
    assert {"odstack_vs_cp", "odstack_vs_workers1", "memory_large_vs_small"} <= set(saved["ratios"])
    assert {"vs_cp", "memory_flat"} <= set(saved["goals"])
    assert not list((tmp_path / "work").iterdir()), "the scratch folder is removed"

    # only the data section is rewritten, and rewriting is idempotent
    text = docs.read_text()
    assert "## Train stage\n\nkept as it is" in text
    assert text.count(data_bench.MARK_START) == 1 and text.count(data_bench.SECTION_TITLE) == 1
    data_bench.update_docs(docs, data_bench.render_section(saved))
    assert docs.read_text() == text


def test_odstack_output_count_is_checked(tmp_path):
    """A converter that writes fewer examples than images fails the benchmark loudly."""
    dataset = data_bench.build_dataset(tmp_path / "dataset", 12)
    contender = data_bench._odstack_contender("odstack", "odstack", dataset.csv, 13)
    try:
        data_bench.run_all([contender], 1, tmp_path / "runs", [dataset.root])
    except SystemExit as error:
        assert "wrote 12 items for 13 images" in str(error)
    else:
        raise AssertionError("a short output was not reported")
