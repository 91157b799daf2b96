"""``bounceback simulate``: run an operation's retry settings against a simulated service first.

Thin over :mod:`bounceback.sim`: the policy comes from the operation's current settings (the home
database), changed by ``--set key=value`` and ``--jitter`` for this run only (nothing is saved).
Hedging is marked in code, not switched on by a setting, so ``--hedge`` (the ``hedge.*`` settings) or
``--hedge-delay`` adds it to the simulated policy; ``--model tail`` is the service it is for.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bounceback.cli._app import AppContext, cli, echo_json, pass_app
from bounceback.core.settings._schema import lookup
from bounceback.errors import ConfigError
from bounceback.sim import (
    COMPARISONS,
    Capacity,
    Contention,
    HedgeSpec,
    Model,
    Outage,
    PolicySpec,
    SlowTail,
    compare,
    plot,
    variants,
)

__all__ = ["build_hedge", "build_model", "simulate_command"]

_MODELS = ("contention", "outage", "capacity", "tail")
_JITTERS = ("none", "full", "equal", "decorrelated")


def build_model(
    name: str,
    clients: int | None,
    outage_seconds: float | None,
    headroom: float | None,
    *,
    slow_fraction: float | None = None,
    slow_latency: float | None = None,
) -> Model:
    """The model named ``name``, with the given changes to its defaults (None keeps a default)."""
    changes: dict[str, Any] = {}
    if clients is not None:
        changes["clients"] = clients
    for option, value, field in (
        ("--slow-fraction", slow_fraction, "slow_fraction"),
        ("--slow-latency", slow_latency, "slow_latency"),
    ):
        if value is not None:
            if name != "tail":
                raise ConfigError(option, value, "no value unless --model tail")
            changes[field] = value
    if headroom is not None:
        if name in ("contention", "tail"):
            raise ConfigError("--headroom", headroom, f"no value: the {name} model has no capacity")
        changes["headroom"] = headroom
    if outage_seconds is not None:
        if name != "outage":
            raise ConfigError("--outage-seconds", outage_seconds, "no value unless --model outage")
        changes["outage_seconds"] = outage_seconds
    if name == "contention":
        return Contention(**changes)
    if name == "capacity":
        return Capacity(**changes)
    if name == "tail":
        return SlowTail(**changes)
    return Outage(**changes)


def build_hedge(values: dict[str, Any], hedge: bool, hedge_delay: float | None) -> HedgeSpec | None:
    """The hedging to simulate: None unless ``--hedge`` (the ``hedge.*`` values) or ``--hedge-delay``
    (a fixed delay, in place of ``hedge.delay`` and ``hedge.percentile``).

    >>> build_hedge({}, False, None) is None, build_hedge({}, False, 0.1).describe()
    (True, 'hedge after 0.1s')
    """
    if hedge_delay is not None:
        values = {**values, "hedge.delay": hedge_delay, "hedge.percentile": 0.0}
    elif not hedge:
        return None
    return HedgeSpec.from_settings(values)


def _overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise ConfigError("--set", pair, "key=value, such as retry.max_attempts=3 or budget.enabled=yes")
        setting = lookup(key.strip(), "--set")
        out[setting.key] = setting.parse(text, setting.key)
    return out


def _progress(began: float) -> Callable[[int, int, str], None] | None:
    """A one-line progress display on stderr while runs go on, when stderr is a terminal (a simulation of
    the default models takes about a second per policy); nothing otherwise, so JSON and logs stay clean."""
    err = sys.stderr
    if not err.isatty():
        return None

    def show(done: int, total: int, label: str) -> None:
        if done == total:
            err.write("\r\x1b[K")
        else:
            took = time.perf_counter() - began
            err.write(f"\r\x1b[Ksimulating {done + 1} of {total}: {label}  ({took:.1f} s)")
        err.flush()

    return show


@cli.command("simulate")
@click.option(
    "--op", "operation", metavar="NAME", help="Simulate this operation's settings (default: global)."
)
@click.option("--model", type=click.Choice(_MODELS), default="outage", show_default=True, help="The service.")
@click.option(
    "--clients", type=click.IntRange(1, 1_000_000), help="Number of clients (default: the model's)."
)
@click.option("--jitter", type=click.Choice(_JITTERS), help="Use this jitter instead of the setting.")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Try another value of a setting for this run only (repeatable), e.g. budget.enabled=yes.",
)
@click.option(
    "--compare",
    "by",
    type=click.Choice(COMPARISONS),
    help="Compare variants side by side (defaults: the 0.1.0 built-in defaults beside today's).",
)
@click.option("--outage-seconds", type=click.FloatRange(0, 86_400), help="Outage length (outage model).")
@click.option("--headroom", type=click.FloatRange(0.01, 1000), help="Capacity as a multiple of normal load.")
@click.option(
    "--slow-fraction",
    type=click.FloatRange(0, 1),
    help="Fraction of attempts on the slow replica (tail model; default 0.05).",
)
@click.option(
    "--slow-latency",
    type=click.FloatRange(0, 3600, min_open=True),
    help="Seconds a slow attempt takes (tail model; default 1).",
)
@click.option(
    "--hedge",
    is_flag=True,
    help="Hedge the attempts as the hedge.* settings say (delay, percentile, max_hedges).",
)
@click.option(
    "--hedge-delay",
    type=click.FloatRange(0, 3600, min_open=True),
    metavar="SECONDS",
    help="Hedge after this fixed delay (implies --hedge; overrides hedge.delay and hedge.percentile).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same numbers.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write calls per second over time to this .png or .svg file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def simulate_command(
    app: AppContext,
    operation: str | None,
    model: str,
    clients: int | None,
    jitter: str | None,
    pairs: tuple[str, ...],
    by: str | None,
    outage_seconds: float | None,
    headroom: float | None,
    slow_fraction: float | None,
    slow_latency: float | None,
    hedge: bool,
    hedge_delay: float | None,
    seed: int,
    plot_path: Path | None,
    as_json: bool,
) -> None:
    """Simulate many clients calling a service through an operation's retry policy.

    Deterministic and fast (virtual time): see the retry storm an outage would cause, and what jitter, a
    circuit breaker or a retry budget would change, before changing a setting. With --model tail and
    --hedge / --hedge-delay (or --compare hedge): what hedging does to the tail latency, and its cost.
    """
    if plot_path is not None and plot_path.suffix.lower() not in (".png", ".svg"):
        raise ConfigError("--plot", str(plot_path), "a file name ending in .png or .svg")
    values = dict(app.settings().effective(operation))
    values.update(_overrides(pairs))
    if jitter is not None:
        values["retry.jitter"] = jitter
    base = PolicySpec.from_settings(values, label=operation or "current")
    base = base.replace(hedge=build_hedge(values, hedge, hedge_delay))
    specs = variants(base, by) if by is not None else [base]
    the_model = build_model(
        model, clients, outage_seconds, headroom, slow_fraction=slow_fraction, slow_latency=slow_latency
    )
    began = time.perf_counter()
    report = compare(the_model, specs, seed=seed, progress=_progress(began))
    elapsed = time.perf_counter() - began
    if plot_path is not None:
        plot(report, plot_path)
    if as_json:
        data = report.to_dict()
        data["policy"] = base.describe()
        data["elapsed_seconds"] = round(elapsed, 3)
        data["plot"] = str(plot_path) if plot_path is not None else None
        echo_json(data)
        return
    click.echo(report.model_description)
    click.echo(f"policy: {base.describe()}")
    click.echo("")
    click.echo(report.table())
    click.echo("")
    click.echo(
        f"{len(specs)} run(s), seed {seed}, {elapsed:.2f} s real time. calls/req is load amplification; "
        "recovery s counts from the end of the incident until new requests succeed at once again."
    )
    if plot_path is not None:
        click.echo(f"plot written to {plot_path}")
