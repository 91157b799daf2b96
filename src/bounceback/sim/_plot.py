"""The picture: calls per second over time, one line per policy, the incident shaded.

matplotlib is imported only here and only when a picture is asked for, so the simulator itself needs
nothing beyond the standard library.
"""

from __future__ import annotations

import math
from pathlib import Path

from bounceback.errors import ConfigError
from bounceback.sim._report import SimReport

__all__ = ["plot", "smooth"]

_FORMATS = (".png", ".svg")


def smooth(values: list[float], buckets: int) -> list[float]:
    """A trailing moving average over ``buckets`` buckets (1 returns the values unchanged).

    >>> smooth([0.0, 10.0, 20.0, 30.0], 2)
    [0.0, 5.0, 15.0, 25.0]
    """
    if buckets <= 1:
        return list(values)
    out: list[float] = []
    total = 0.0
    for i, v in enumerate(values):
        total += v
        if i >= buckets:
            total -= values[i - buckets]
        out.append(total / min(i + 1, buckets))
    return out


def plot(
    report: SimReport, path: str | Path, *, title: str | None = None, smoothing: int | None = None
) -> Path:
    """Draw calls per second over time for every policy of ``report`` into ``path`` (``.png`` or ``.svg``).

    ``smoothing`` is a moving average in buckets (default: about 1/200 of the run, at least 1). Returns the
    path written. Needs matplotlib (``pip install 'bounceback[plot]'``).
    """
    target = Path(path)
    if target.suffix.lower() not in _FORMATS:
        raise ConfigError("plot", str(path), "a file name ending in .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never open a window
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is installed in CI
        raise ConfigError(
            "plot",
            str(path),
            "matplotlib installed",
            hint="pip install 'bounceback[plot]', or leave --plot out",
        ) from exc

    longest = max((len(r.calls_series) for r in report.results), default=0)
    if smoothing is None:
        smoothing = max(1, longest // 200)
    fig, ax = plt.subplots(figsize=(11, 5.2), dpi=110)
    try:
        # Policies often coincide (jitter hardly matters during an outage): vary the dash as well as the
        # colour, and draw later lines thinner, so every line stays visible where they overlap.
        styles = ["-", "--", "-.", ":"]
        top = 0.0
        count = len(report.results)
        for i, result in enumerate(report.results):
            rates = smooth(result.rates(), smoothing)
            top = max(top, max(rates, default=0.0))
            times = [(b + 0.5) * result.bucket_seconds for b in range(len(rates))]
            width = 2.4 - 1.2 * i / max(1, count - 1)
            ax.plot(times, rates, linestyle=styles[i % len(styles)], linewidth=width, label=result.label)
        if report.incident is not None:
            start, end = report.incident
            label = {"outage": "outage", "capacity": "surge"}.get(report.model, "incident")
            ax.axvspan(start, end, color="0.88", zorder=0, label=label)
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("calls per second reaching the service")
        ax.set_title(title or report.model_description, fontsize=10)
        if top > 0 and math.isfinite(top):
            ax.set_ylim(0, top * 1.08)
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, framealpha=0.9)
        fig.tight_layout()
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, format=target.suffix[1:].lower())
    finally:
        plt.close(fig)
    return target
