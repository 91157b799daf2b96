"""Reports: the table, JSON, percentiles, recovery; the picture in PNG and SVG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bounceback import ConfigError
from bounceback.sim import Outage, PolicySpec, compare, plot, variants
from bounceback.sim._plot import smooth
from bounceback.sim._report import percentile, recovery_seconds

MODEL = Outage(clients=50, outage_start=10, outage_seconds=20, after_seconds=20)


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return compare(MODEL, variants(PolicySpec(), "all"), seed=5)


def test_the_table_has_one_row_per_policy_and_every_column(report) -> None:  # type: ignore[no-untyped-def]
    text = report.table()
    lines = text.splitlines()
    assert len(lines) == 1 + len(report.results)
    heads = (
        "calls/req",
        "recovery s",
        "p99 s",
        "breaker opens",
        "budget refusals",
        "calls in incident",
        "shed",
    )
    for head in (*heads, "calls/req in incident", "probe lockstep"):
        assert head in lines[0]
    assert lines[1].startswith("none ")
    md = report.table(markdown=True).splitlines()
    assert md[0].startswith("| policy |") and md[1].startswith("|---|")
    assert len(md) == 2 + len(report.results)


def test_json_round_trips_and_says_whether_it_recovered(report) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["model"] == "outage" and data["incident"] == [10, 30]
    first = data["results"][0]
    assert first["calls"] == sum(first["calls_per_bucket"])
    assert first["amplification"] == pytest.approx(first["calls"] / first["requests"])
    assert isinstance(first["recovered"], bool)
    with pytest.raises(KeyError, match="known"):
        report.result("nope")


def test_percentile_and_recovery() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert recovery_seconds([5, 5], [5, 5], 1.0, None) is None
    assert recovery_seconds([10] * 8, [10] * 8, 1.0, (2, 4)) == 0.0
    # Healthy at once after the incident, then a relapse: recovery counts to the end of the relapse.
    ok = [10, 10, 0, 0, 10, 10, 0, 10, 10, 10, 10, 10, 10, 10]
    assert recovery_seconds([10] * 14, ok, 1.0, (2, 4), steady_buckets=3) == 3.0
    assert recovery_seconds([10] * 6, [10, 10, 0, 0, 0, 0], 1.0, (2, 4)) == math.inf


def test_smoothing_keeps_length_and_average() -> None:
    values = [0.0, 4.0, 8.0, 4.0, 0.0]
    assert smooth(values, 1) == values
    out = smooth(values, 3)
    assert len(out) == len(values) and out[2] == 4.0


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_the_plot_is_written(report, tmp_path: Path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    path = plot(report, tmp_path / "sub" / f"calls{suffix}")
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    else:
        text = data.decode()
        assert "<svg" in text and "full + budget" in text  # the legend names each policy


def test_the_plot_refuses_other_formats(report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        plot(report, tmp_path / "calls.jpg")
    assert info.value.field == "plot"


def test_a_model_without_incident_leaves_out_the_incident_columns() -> None:
    from bounceback.sim import Contention

    text = compare(Contention(clients=5), [PolicySpec(attempts=None)]).table()
    assert "recovery s" not in text and "calls in incident" not in text and "p99 s" in text
