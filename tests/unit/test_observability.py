"""DynamoDB's write-unit figure for heartbeats, sampled once per window per metric name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib import observability
from chalicelib.observability import WRITE_UNITS_SAMPLE_SECONDS, metrics, record_write_units


@pytest.fixture(autouse=True)
def fresh_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An execution environment that has sampled nothing, and an empty metric set."""
    monkeypatch.setattr(observability, "_last_sample", {})
    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


def recorded(name: str) -> list[float]:
    values = metrics.metric_set.get(name, {}).get("Value", [])
    metrics.clear_metrics()
    return list(values)


def test_the_first_figure_is_recorded() -> None:
    record_write_units("HeartbeatWriteUnits", 1.0, now=100.0)

    assert recorded("HeartbeatWriteUnits") == [1.0]


@pytest.mark.parametrize(
    ("later_by", "sampled"),
    [
        (0.0, False),
        (1.0, False),
        (WRITE_UNITS_SAMPLE_SECONDS - 0.001, False),
        (WRITE_UNITS_SAMPLE_SECONDS, True),
        (WRITE_UNITS_SAMPLE_SECONDS * 3, True),
    ],
)
def test_another_figure_is_recorded_only_once_the_window_has_passed(
    later_by: float, sampled: bool
) -> None:
    record_write_units("HeartbeatWriteUnits", 1.0, now=100.0)
    recorded("HeartbeatWriteUnits")

    record_write_units("HeartbeatWriteUnits", 2.0, now=100.0 + later_by)

    assert recorded("HeartbeatWriteUnits") == ([2.0] if sampled else [])


def test_the_window_runs_from_the_last_recorded_figure_not_the_last_call() -> None:
    record_write_units("HeartbeatWriteUnits", 1.0, now=0.0)
    for moment in (300.0, 600.0, 899.0):
        record_write_units("HeartbeatWriteUnits", 1.0, now=moment)
    assert recorded("HeartbeatWriteUnits") == [1.0]

    record_write_units("HeartbeatWriteUnits", 1.0, now=900.0)
    record_write_units("HeartbeatWriteUnits", 1.0, now=1799.0)

    assert recorded("HeartbeatWriteUnits") == [1.0]


def test_each_metric_name_has_its_own_window() -> None:
    record_write_units("HeartbeatWriteUnits", 1.0, now=100.0)
    record_write_units("RegisterWriteUnits", 3.0, now=101.0)

    assert {name: m["Value"] for name, m in metrics.metric_set.items()} == {
        "HeartbeatWriteUnits": [1.0],
        "RegisterWriteUnits": [3.0],
    }
