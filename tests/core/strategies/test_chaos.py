"""Fault injection: off unless switched on, rates honoured, faults meet the Policy like real ones, loud."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from bounceback import ConfigError, FaultInjector, Policy
from bounceback.events import EventBus, FaultInjected
from bounceback.settings import StaticSettings
from bounceback.strategies import InjectedFault, active_injectors
from bounceback.testing import FakeClock


def answer42() -> str:
    return "42"


def ok() -> str:
    return "ok"


def test_off_by_default_and_off_means_untouched() -> None:
    chaos = FaultInjector("pricing", error_rate=1.0, latency_rate=1.0)
    wrapped = chaos(answer42)
    assert not chaos.enabled
    assert [wrapped() for _ in range(50)] == ["42"] * 50
    assert chaos.injected == 0 and chaos not in active_injectors()


def test_rates_are_honoured_with_an_injected_random() -> None:
    clock = FakeClock()
    chaos = FaultInjector(
        "pricing",
        enabled=True,
        error_rate=0.2,
        latency_rate=0.5,
        latency=2,
        rng=random.Random(7),
        clock=clock,
    )
    wrapped = chaos(ok)
    errors = 0
    for _ in range(2000):
        try:
            wrapped()
        except InjectedFault:
            errors += 1
    assert 300 < errors < 500  # about 20 %
    assert 900 < len(clock.sleeps) < 1100 and set(clock.sleeps) == {2.0}  # about half, 2 s each
    assert chaos in active_injectors()


def test_injected_results_and_custom_errors() -> None:
    chaos = FaultInjector("feed", enabled=True, result_rate=1.0, result=[], rng=random.Random(1))
    assert chaos(lambda: ["real"])() == []
    boom = FaultInjector("feed", enabled=True, error_rate=1.0, error=KeyError)
    with pytest.raises(KeyError, match="feed"):
        boom(lambda: 1)()
    with pytest.raises(ConfigError) as info:
        FaultInjector("feed", error_rate=1.5)
    assert info.value.field == "error_rate"
    with pytest.raises(ConfigError) as info:
        FaultInjector("feed", error="meteor")
    assert info.value.field == "error"


def test_injected_errors_meet_retry_and_events_are_emitted() -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    clock = FakeClock()
    chaos = FaultInjector("quotes", enabled=True, error_rate=0.5, rng=random.Random(3), bus=bus, clock=clock)
    policy = Policy("quotes", attempts=10, clock=clock, budget=None)
    calls: list[int] = []

    @policy
    @chaos
    def quote() -> str:
        calls.append(1)
        return "1.00"

    results = [quote() for _ in range(20)]
    assert results == ["1.00"] * 20  # every injected reset was retried away
    faults = [e for e in seen if isinstance(e, FaultInjected)]
    assert len(faults) == chaos.injected > 0 and len(clock.sleeps) == chaos.injected
    assert all(e.fault == "error" and e.detail == "InjectedFault" for e in faults)


def test_async_latency_awaits_the_clock() -> None:
    clock = FakeClock()
    chaos = FaultInjector("feed", enabled=True, latency_rate=1.0, latency=0.5, clock=clock)

    @chaos
    async def fetch() -> int:
        return 1

    assert asyncio.run(fetch()) == 1
    assert clock.sleeps == [0.5]


def test_settings_switch_it_on_live_and_it_says_so(caplog: pytest.LogCaptureFixture) -> None:
    settings = StaticSettings({})
    chaos = FaultInjector("orders", settings=settings, rng=random.Random(1))
    wrapped = chaos(ok)
    assert wrapped() == "ok" and not chaos.enabled
    with caplog.at_level(logging.WARNING, logger="bounceback.chaos"):
        settings.set("chaos.error_rate", "1", operation="orders")
        settings.set("chaos.enabled", "yes", operation="orders")
    assert chaos.enabled
    assert any("fault injection is ON for 'orders'" in r.getMessage() for r in caplog.records)
    assert "100% errors" in chaos.describe()
    with pytest.raises(InjectedFault):
        wrapped()
    settings.set("chaos.enabled", "no", operation="orders")
    assert wrapped() == "ok"
    chaos.close()
