"""The serving benchmark's machinery at a tiny size, so it cannot rot (no timing asserts)."""
from __future__ import annotations

import json
from pathlib import Path

from bench import serving_bench


def test_side_by_side_then_soak(model_server: str, serving_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Data stage\n\n<!-- data-bench:start -->\nkept\n<!-- data-bench:end -->\n")
    common = ["--model-server", model_server, "--serving-dir", str(serving_dir), "--docs", str(docs),
              "--width", "160", "--height", "120"]
    out = tmp_path / "serving.json"
    results = serving_bench.main([*common, "--requests", "8", "--repeat", "1", "--warmup", "4", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    [model] = saved["models"].values()
    assert set(model["runs"]) == {"direct_c1", "rest_c1", "direct_c8", "rest_c8"}
    for row in model["runs"].values():
        assert row["requests"] == 8 and row["errors"] == 0 and row["p50_ms"] > 0 and row["throughput_rps"] > 0
    assert set(model["ratios"]) == {"c1", "c8"} and set(model["goals"]) == {"p50_overhead", "throughput", "errors"}
    assert saved["signature"] == "image_bytes"
    text = docs.read_text()
    assert "<!-- data-bench:start -->\nkept\n<!-- data-bench:end -->" in text
    assert text.count(serving_bench.MARK_START) == 1 and "| direct gRPC Predict | 8 |" in text
    assert "Soak: not run yet" in text

    soak = serving_bench.main([*common, "--soak", "2", "--concurrency", "4", "--warmup", "4",
                               "--json", str(tmp_path / "serving_soak.json")])
    assert soak["errors"] == 0 and soak["requests"] > 0 and len(soak["samples"]) >= 2
    assert soak["samples"][0]["gunicorn_rss_kib"] > 0 and soak["samples"][0]["workers"] == 2
    text = docs.read_text()
    assert text.count(serving_bench.MARK_START) == 1 and "Soak (" in text and "| direct gRPC Predict | 8 |" in text
