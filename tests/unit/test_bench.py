from __future__ import annotations

import json
from pathlib import Path

from marketban.bench.engine import bench_engine
from marketban.bench.report import BEGIN, END, main, render_table, splice
from marketban.domain.calendars import default_calendar


def test_engine_bench_decides_every_order_in_every_run_and_reports_the_median() -> None:
    result = bench_engine(default_calendar(), orders=2000, banned_persons=50, runs=3)
    assert [r["decisions"] for r in result["runs"]] == [2000, 2000, 2000]
    rates = sorted(r["decisions_per_s"] for r in result["runs"])
    assert result["decisions_per_s"] == rates[1]
    assert result["flow_messages"] >= 2000


def test_the_generated_block_replaces_only_itself_and_keeps_the_prose() -> None:
    doc = f"# Benchmarks\n\nprose before\n\n{BEGIN}\nold figures\n{END}\n\nprose after\n"
    out = splice(doc, f"{BEGIN}\nnew figures\n{END}")
    assert "old figures" not in out
    assert "new figures" in out
    assert out.startswith("# Benchmarks\n\nprose before")
    assert out.endswith("prose after\n")
    assert splice(out, f"{BEGIN}\nnewer\n{END}").count(BEGIN) == 1


def test_the_table_marks_a_missed_target_and_a_met_one() -> None:
    results = {
        "engine": {"decisions_per_s": 160_000, "runs": [], "runs_count": 3},
        "e2e": {"throughput_per_s": 600, "ratio": 0.03, "p99_ms": 9000, "runs": []},
    }
    table = render_table(results, "4.3.1")
    engine_row = next(r for r in table.splitlines() if r.startswith("| engine"))
    e2e_row = next(r for r in table.splitlines() if r.startswith("| end-to-end"))
    assert engine_row.endswith("| yes |")
    assert e2e_row.endswith("| **no** |")


def test_the_report_writes_the_json_results_and_the_docs_block(tmp_path: Path) -> None:
    engine = tmp_path / "engine.json"
    e2e = tmp_path / "e2e.json"
    engine.write_text("noise\n" + json.dumps({"decisions_per_s": 1, "runs": [], "runs_count": 3}))
    e2e.write_text(json.dumps({"throughput_per_s": 2, "runs": []}))
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"load_per_s": 25_000, "records": 9}))
    doc, out = tmp_path / "benchmarks.md", tmp_path / "bench-results.json"
    args = [str(engine), str(e2e), str(reference), str(doc), str(out), "4.3.1", "2026-11-22"]
    assert main(args) == 0
    written = json.loads(out.read_text())
    assert written["engine"]["decisions_per_s"] == 1
    assert written["e2e"]["throughput_per_s"] == 2
    assert written["kafka"] == "4.3.1"
    assert written["reference"]["load_per_s"] == 25_000
    assert (
        "| reference data, 1,000,000 linked accounts (records/s) | 20,000 | 50,000 | 25,000 | yes |"
        in doc.read_text()
    )
    assert BEGIN in doc.read_text()
