from __future__ import annotations

from marketban.domain.calendars import default_calendar
from marketban.service.bench import bench_engine


def test_engine_bench_decides_every_order_and_reports_a_rate() -> None:
    result = bench_engine(default_calendar(), orders=2000, banned_persons=50)
    assert result["decisions"] == 2000
    assert result["decisions_per_s"] > 0
    assert result["flow_messages"] >= 2000
