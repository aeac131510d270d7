"""`marketban bench e2e` end to end on the real broker, tiny sizes: it must keep working.

No figure is asserted against a target (benchmarks are not tests); the test checks that every
lane delivered every record and that every figure was measured.
"""

from __future__ import annotations

import json

import pytest

from marketban.bench.e2e import r8_cost
from tests.integration.stream import cli


def test_bench_e2e_measures_every_lane_and_every_order_gets_its_decision(
    kafka_env: dict[str, str],
) -> None:
    out = cli(
        kafka_env,
        "bench",
        "e2e",
        "--orders",
        "300",
        "--runs",
        "1",
        "--rate",
        "100",
        "--latency-seconds",
        "2",
        "--banned-persons",
        "20",
        "--warmup-orders",
        "100",
        timeout=400,
    )
    result = json.loads(out.splitlines()[-1])
    # The warm-up round is measured the same way and kept apart from every median.
    assert len(result["runs"]) == 1
    (warmup,) = result["warmup"]
    assert warmup["missing"] == 0
    assert result["throughput_per_s"] == result["runs"][0]["throughput_per_s"]
    run = result["runs"][0]
    assert run["missing"] == 0
    for figure in (
        "throughput_per_s",
        "passthrough_per_s",
        "r8_off_per_s",
        "r8_on_again_per_s",
        "r8_off_again_per_s",
        "r8_on_third_per_s",
        "floor_p50_ms",
        "floor_p99_ms",
    ):
        assert run[figure] > 0, figure
    assert run["p50_ms"] <= run["p99_ms"] <= run["p999_ms"]
    # R8's cost: each lane without terminals against the two with them either side of it.
    on, off, again, off2, third = (
        run[k]
        for k in (
            "throughput_per_s", "r8_off_per_s", "r8_on_again_per_s", "r8_off_again_per_s",
            "r8_on_third_per_s",
        )
    )  # fmt: skip
    # From the rates as printed (rounded to whole orders/s): within their rounding.
    slack = 2 / min(off, off2) + 0.001
    expected = [r8_cost(on, off, again), r8_cost(again, off2, third)]
    assert run["r8_costs"] == pytest.approx(expected, abs=slack)
    assert result["r8_cost"] == pytest.approx(sum(run["r8_costs"]) / 2, abs=0.001)
    assert result["reference_records"] > 0
    assert result["worker_peak_rss_mb"] > 0
