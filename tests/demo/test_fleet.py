"""Every fault class of the demo fleet, over real sockets on 127.0.0.1, recovered (or not) by bounceback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bounceback import Backoff
from bounceback.demo._fleet import DEVICES, Fleet
from bounceback.integrations._httpx import RecoveringTransport
from bounceback.testing import FakeClock

QUICK = Backoff(initial=0.1, max_delay=1, jitter="none")


class Ticking:
    """A monotonic reading the test moves by hand: the fleet's notion of time, separate from the client's."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticking() -> Ticking:
    return Ticking()


@pytest.fixture
def fleet(ticking: Ticking) -> Iterator[Fleet]:
    with Fleet(speed=100, clock=ticking) as f:
        yield f


def client(clock: FakeClock, attempts: int = 4) -> httpx.Client:
    transport = RecoveringTransport(clock=clock, attempts=attempts, breakers=False, backoff=QUICK)
    return httpx.Client(transport=transport, timeout=2)


def test_healthy_and_slow_devices_answer(fleet: Fleet) -> None:
    with client(FakeClock()) as c:
        assert c.get(fleet.url("press-01")).json()["device"] == "press-01"
        assert c.get(fleet.url("oven-02")).json()["kind"] == "curing oven"
    assert fleet.calls("press-01") == 1


def test_flapping_device_recovers_on_the_third_try(fleet: Fleet) -> None:
    clock = FakeClock()
    with client(clock) as c:
        assert c.get(fleet.url("mixer-03")).status_code == 200
    assert fleet.calls("mixer-03") == 3
    assert clock.sleeps == [0.1, 0.2]


def test_throttling_device_is_waited_for_as_it_asks(fleet: Fleet, ticking: Ticking) -> None:
    clock = FakeClock()
    clock.on_sleep = lambda seconds: setattr(ticking, "now", ticking.now + seconds)
    with client(clock) as c:
        assert c.get(fleet.url("conveyor-04")).status_code == 200
    # its Retry-After (whole seconds, at least 1), not our 0.1 s backoff
    assert clock.sleeps == [1.0]


def test_outage_device_answers_503_then_cuts_then_comes_back(fleet: Fleet, ticking: Ticking) -> None:
    with httpx.Client(timeout=2) as c:
        assert c.get(fleet.url("boiler-05")).status_code == 503
        ticking.now = fleet.outage_seconds * 0.5
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(fleet.url("boiler-05"))
    ticking.now = fleet.outage_seconds + 0.01
    with httpx.Client(timeout=2) as c:
        assert c.get(fleet.url("boiler-05")).status_code == 200


def test_cut_mid_answer_is_recovered(fleet: Fleet) -> None:
    with httpx.Client(timeout=2) as raw, pytest.raises(httpx.RemoteProtocolError):
        raw.get(fleet.url("pump-08"))
    with client(FakeClock()) as c:
        assert c.get(fleet.url("pump-08")).json()["device"] == "pump-08"


def test_refusing_device_exhausts_attempts(fleet: Fleet) -> None:
    clock = FakeClock()
    with client(clock, attempts=3) as c, pytest.raises(httpx.ConnectError):
        c.get(fleet.url("valve-06"))
    assert len(clock.sleeps) == 2


def test_auth_failure_is_not_retried(fleet: Fleet) -> None:
    with client(FakeClock()) as c:
        response = c.get(fleet.url("sensor-07"))
    assert response.status_code == 401
    assert fleet.calls("sensor-07") == 1


def test_fleet_has_every_fault_class_once() -> None:
    faults = [d.fault for d in DEVICES]
    assert sorted(faults) == sorted(
        {"healthy", "slow", "flapping", "throttling", "outage", "cut", "refusing", "auth"}
    )


def test_bad_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed: got 0"):
        Fleet(speed=0)
