"""The demo job: pull the configuration of every device in the fleet, recovering what can be recovered.

Every device has its own named operation (``pull-config/<device>``) and breaker (``device/<device>``),
with breaker state shared through the home database, so ``bounceback status``, ``bounceback timeline``,
``bounceback tickets`` and the dashboard see the run from other processes. Faults that outlast automatic
recovery become recovery tickets: parked in the home database, then offered to the person at the
terminal (when there is one) or listed with the command that resolves them.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bounceback.core._events import Event, RecoveryExhausted, RecoverySucceeded, default_bus
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.policy._manual import ManualRecovery
from bounceback.core.policy._policy import Policy
from bounceback.core.retry._backoff import Backoff
from bounceback.demo._fleet import DEVICES, Device, Fleet
from bounceback.demo._plant import PLANT_DEVICES, PlantDevices, plant_available
from bounceback.errors import RecoveryRequired
from bounceback.integrations._http import RetryableResponse, classify_status
from bounceback.integrations._httpx import HTTPX_CLASSIFIER
from bounceback.stores._shared import breaker_store_from_settings
from bounceback.stores._tickets import SqliteTickets
from bounceback.stores.journal._writer import JournalWriter
from bounceback.stores.settings._store import SqliteSettings

__all__ = ["DemoResult", "DeviceOutcome", "demo_devices", "run_job"]


def demo_devices() -> tuple[Device, ...]:
    """Every device of the demo: the HTTP fleet, and the Modbus / OPC UA ones when their extras are installed."""
    return DEVICES + (PLANT_DEVICES if plant_available() else ())


@dataclass(slots=True)
class DeviceOutcome:
    """What happened to one device."""

    device: str
    kind: str
    fault: str
    outcome: str = "pending"
    """``ok``, ``recovered``, ``ticket`` or ``error``."""
    attempts: int = 0
    seconds: float = 0.0
    detail: str = ""
    ticket_id: str | None = None
    guidance: str = ""
    """The first guidance step of the ticket, when one was opened."""
    decision: str = ""
    """What the person at the terminal chose for the ticket (empty: nobody decided yet)."""


@dataclass(slots=True)
class DemoResult:
    """The whole job: one outcome per device, and the parked tickets."""

    outcomes: list[DeviceOutcome] = field(default_factory=list)
    seconds: float = 0.0
    database: Path | None = None

    @property
    def tickets(self) -> list[str]:
        """Ids of the tickets the job parked."""
        return [o.ticket_id for o in self.outcomes if o.ticket_id]


class _Attempts:
    """Counts attempts per operation from the event bus (a first-try success emits no event)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_operation: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, (RecoverySucceeded, RecoveryExhausted)):
            with self._lock:
                self.by_operation[event.operation] = event.attempts


@dataclass(frozen=True, slots=True)
class Limits:
    """The demo's own limits, scaled to its speed so the story fits in seconds."""

    attempts: int
    deadline: float
    backoff: Backoff
    open_seconds: float
    http_timeout: float

    @classmethod
    def for_speed(cls, speed: float) -> Limits:
        """Limits for a fleet running ``speed`` times faster than real time."""
        return cls(
            attempts=10,
            deadline=max(4.0, 30.0 / speed),
            backoff=Backoff(initial=0.4 / speed, max_delay=4.0 / speed, jitter="full"),
            open_seconds=max(0.2, 2.0 / speed),
            http_timeout=max(0.5, 3.0 / speed),
        )


def fetch_config(client: httpx.Client, url: str, wall: Callable[[], float]) -> dict[str, Any]:
    """One attempt: GET the device's configuration; retryable statuses raise RetryableResponse."""
    response = client.get(url)
    verdict = classify_status(response.status_code, response.headers, now=wall())
    if verdict is not None:
        raise RetryableResponse("GET", url, response.status_code, response, verdict.retry_after)
    response.raise_for_status()  # 4xx: HTTPStatusError, permanent (authentication, not found)
    data: dict[str, Any] = response.json()
    return data


def run_job(
    *,
    database: Path,
    speed: float = 1.0,
    prompter: Any = None,
    on_outcome: Callable[[DeviceOutcome], None] | None = None,
) -> DemoResult:
    """Run the job against a fresh fleet; returns every device's outcome. Tickets are parked in ``database``."""
    limits = Limits.for_speed(speed)
    settings = SqliteSettings(database)
    store = breaker_store_from_settings(settings, path=database)
    tickets = SqliteTickets(database)
    journal = JournalWriter(database, settings=settings).start()
    counter = _Attempts()
    stop_counting = default_bus.subscribe(counter)
    result = DemoResult(database=database)
    started = time.monotonic()
    devices = demo_devices()
    try:
        with (
            Fleet(speed=speed) as fleet,
            httpx.Client(timeout=limits.http_timeout) as client,
            PlantDevices(speed=speed) if len(devices) > len(DEVICES) else contextlib.nullcontext() as plant,
        ):
            plant_devices = {d.name: d for d in PLANT_DEVICES}
            if plant is not None:
                # The OPC UA server builds its address space first (CPU-bound, a second or two): before the
                # pulls start, so it does not slow the other devices' stories down.
                plant.wait_ready()

            def pull(name: str) -> DeviceOutcome:
                device = fleet.devices.get(name) or plant_devices[name]
                outcome = DeviceOutcome(name, device.kind, device.fault)
                operation = f"pull-config/{name}"
                breaker = CircuitBreaker(
                    f"device/{name}",
                    store=store,
                    min_calls=4,
                    failure_rate=50,
                    open_seconds=limits.open_seconds,
                    open_seconds_max=limits.open_seconds * 4,
                    half_open_calls=1,
                )
                policy = Policy(
                    operation,
                    attempts=limits.attempts,
                    deadline=limits.deadline,
                    backoff=limits.backoff,
                    breaker=breaker,
                    # The plant's Modbus and OPC UA errors are known by the error packs of the defaults.
                    classifier=HTTPX_CLASSIFIER if name in fleet.devices else DEFAULT_CLASSIFIER,
                    fallback=ManualRecovery("park", store=tickets, settings=settings),
                )
                if name in fleet.devices:
                    attempt = functools.partial(fetch_config, client, fleet.url(name), time.time)
                else:
                    assert plant is not None, "plant devices run only with their servers"
                    attempt = functools.partial(plant.read, name)
                t0 = time.monotonic()
                try:
                    config = policy.call(attempt)
                except RecoveryRequired as exc:
                    outcome.outcome = "ticket"
                    outcome.ticket_id = exc.ticket.id
                    outcome.detail = exc.ticket.topic
                    steps = exc.ticket.guidance
                    outcome.guidance = steps[0].text if steps else exc.ticket.summary
                except Exception as exc:  # the demo reports every device, whatever happened
                    outcome.outcome = "error"
                    outcome.detail = f"{type(exc).__name__}: {exc}"
                else:
                    outcome.outcome = "ok"
                    outcome.detail = _detail(config)
                finally:
                    policy.close()
                outcome.seconds = time.monotonic() - t0
                outcome.attempts = counter.by_operation.get(operation, 1)
                if outcome.outcome == "ok" and outcome.attempts > 1:
                    outcome.outcome = "recovered"
                if on_outcome is not None:
                    on_outcome(outcome)
                return outcome

            with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="demo-device") as pool:
                result.outcomes = list(pool.map(pull, [d.name for d in devices]))
            if prompter is not None:
                _offer_tickets(result, tickets, prompter, pull)
    finally:
        stop_counting()
        journal.close()
        tickets.close()
        settings.close()
    result.seconds = time.monotonic() - started
    return result


def _detail(config: dict[str, Any]) -> str:
    if "registers" in config:
        return f"unit {config['unit']} registers {config['address']}.. = {config['registers']}"
    if "temperature_c" in config:
        return f"Line1.Temperature = {config['temperature_c']} °C"
    return f"firmware {config.get('firmware')}"


def _offer_tickets(
    result: DemoResult, tickets: SqliteTickets, prompter: Any, again: Callable[[str], DeviceOutcome]
) -> None:
    """Attended: show each parked ticket, apply the person's choice, record whether it worked."""
    for index, outcome in enumerate(result.outcomes):
        if outcome.ticket_id is None or not prompter.is_attended():
            continue
        ticket = tickets.get(outcome.ticket_id)
        resolution = prompter.ask(ticket)
        tickets.resolve(ticket.id, resolution)
        outcome.decision = resolution.choice.value
        if resolution.choice.value in ("retry", "retry-adjusted"):
            retried = again(outcome.device)
            tickets.record_outcome(ticket.id, retried.outcome in ("ok", "recovered"))
            retried.decision = resolution.choice.value
            result.outcomes[index] = retried
