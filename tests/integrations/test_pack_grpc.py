"""The gRPC error pack against a real grpcio server on 127.0.0.1: each status provoked by a real call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from bounceback import ErrorKind
from bounceback.classify import classify
from bounceback.testing import FakeClock
from tests.integrations.packs_support import clear_on_first_wait, free_port, guidance_text, policy, ticket

METHOD = "/plant.Line/Read"


@dataclass
class Faults:
    """What the server does with the next calls: a status code to abort with, or a delay."""

    code: grpc.StatusCode | None = None
    details: str = ""
    pushback_ms: int | None = None
    delay: float = 0.0
    calls: list[bytes] = field(default_factory=list)


class PlantServer:
    """A real grpc server with one raw-bytes method, /plant.Line/Read, whose faults a test switches."""

    def __init__(self) -> None:
        self.port = free_port()
        self.faults = Faults()
        self.server: Any = None
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        f = self.faults
        f.calls.append(request)
        if f.delay:
            time.sleep(f.delay)  # the server is slow for real; the client's deadline is shorter
        if f.code is not None:
            if f.pushback_ms is not None:
                context.set_trailing_metadata((("grpc-retry-pushback-ms", str(f.pushback_ms)),))
            context.abort(f.code, f.details)
        return b"21.5 C from " + request

    def start(self) -> None:
        handler = grpc.method_handlers_generic_handler(
            "plant.Line", {"Read": grpc.unary_unary_rpc_method_handler(self._read)}
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        self.server.add_insecure_port(self.target)
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None).wait(5)


@pytest.fixture
def plant() -> Iterator[PlantServer]:
    server = PlantServer()
    yield server
    server.stop()


@pytest.fixture
def channel(plant: PlantServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(plant.target) as ch:
        yield ch


def read(channel: grpc.Channel, timeout: float = 5) -> bytes:
    call = channel.unary_unary(METHOD)
    result: bytes = call(b"sensor-7", timeout=timeout)
    return result


def _error(fn: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    return caught.value


@pytest.mark.parametrize(
    ("code", "kind", "topic"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, ErrorKind.PERMANENT, "grpc-invalid-argument"),
        (grpc.StatusCode.NOT_FOUND, ErrorKind.PERMANENT, "grpc-not-found"),
        (grpc.StatusCode.PERMISSION_DENIED, ErrorKind.PERMANENT, "grpc-permission"),
        (grpc.StatusCode.UNAUTHENTICATED, ErrorKind.PERMANENT, "grpc-permission"),
        (grpc.StatusCode.FAILED_PRECONDITION, ErrorKind.PERMANENT, "grpc-precondition"),
    ],
)
def test_permanent_statuses_are_not_retried_and_guidance_quotes_the_server(
    plant: PlantServer, channel: grpc.Channel, code: grpc.StatusCode, kind: ErrorKind, topic: str
) -> None:
    plant.faults.code = code
    plant.faults.details = "sensor-7 is not on line 1"
    clock = FakeClock()
    info = policy(clock).call(lambda: read(channel))
    assert len(plant.faults.calls) == 1 and clock.sleeps == []
    assert info.classification.kind is kind
    assert code.name in info.classification.reason
    t = ticket(info, clock)
    assert t.topic == topic
    assert t.facts["grpc_code"] == code.name
    assert "sensor-7 is not on line 1" in guidance_text(t)


def test_unavailable_from_a_draining_server_recovers_when_it_is_back(
    plant: PlantServer, channel: grpc.Channel
) -> None:
    plant.faults.code = grpc.StatusCode.UNAVAILABLE
    plant.faults.details = "draining for maintenance"
    assert classify(_error(lambda: read(channel))).kind is ErrorKind.TRANSIENT
    clock = FakeClock()

    def back() -> None:
        plant.faults.code = None

    clear_on_first_wait(clock, back)
    assert policy(clock).call(lambda: read(channel)) == b"21.5 C from sensor-7"
    assert len(clock.sleeps) == 1


def test_a_stopped_server_is_unavailable_with_its_address_in_the_guidance(plant: PlantServer) -> None:
    plant.stop()
    clock = FakeClock()
    with grpc.insecure_channel(plant.target) as ch:
        info = policy(clock, attempts=2).call(lambda: read(ch))
    assert info.classification.kind is ErrorKind.TRANSIENT
    t = ticket(info, clock)
    assert t.topic == "grpc-unavailable"
    assert t.facts["address"] == plant.target
    assert f"gRPC server at {plant.target}" in guidance_text(t)


def test_deadline_exceeded_is_transient_and_recovers(plant: PlantServer, channel: grpc.Channel) -> None:
    plant.faults.delay = 0.3
    err = _error(lambda: read(channel, timeout=0.05))
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert classify(err).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    done = threading.Event()

    def fast() -> None:
        plant.faults.delay = 0.0
        done.set()

    clear_on_first_wait(clock, fast)
    plant.faults.delay = 0.3
    assert policy(clock).call(lambda: read(channel, timeout=0.05 if not done.is_set() else 5)) == (
        b"21.5 C from sensor-7"
    )
    t_info = policy(FakeClock(), attempts=1).call(lambda: (_ for _ in ()).throw(err))
    assert ticket(t_info, FakeClock()).topic == "grpc-deadline"


def test_resource_exhausted_is_throttled_with_the_servers_pushback(
    plant: PlantServer, channel: grpc.Channel
) -> None:
    plant.faults.code = grpc.StatusCode.RESOURCE_EXHAUSTED
    plant.faults.details = "quota of 10 reads per second exceeded"
    plant.faults.pushback_ms = 2500
    verdict = classify(_error(lambda: read(channel)))
    assert verdict.kind is ErrorKind.THROTTLED
    assert verdict.retry_after == 2.5
    clock = FakeClock()
    clear_on_first_wait(clock, lambda: setattr(plant.faults, "code", None))
    assert policy(clock).call(lambda: read(channel)) == b"21.5 C from sensor-7"
    assert clock.sleeps == [2.5]  # the server's pushback, not our own backoff


def test_grpc_aio_errors_are_classified_alike(plant: PlantServer) -> None:
    import asyncio

    plant.faults.code = grpc.StatusCode.PERMISSION_DENIED

    async def main() -> BaseException:
        async with grpc.aio.insecure_channel(plant.target) as ch:
            try:
                await ch.unary_unary(METHOD)(b"x", timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc
        raise AssertionError("no error")

    err = asyncio.run(main())
    assert classify(err).kind is ErrorKind.PERMANENT


# The interceptors: every unary call under a policy, sync and asyncio.


def _intercepted(plant: PlantServer, clock: FakeClock, **options: Any) -> grpc.Channel:
    from bounceback.integrations import RecoveringInterceptor

    options.setdefault("attempts", 4)
    interceptor = RecoveringInterceptor(target=plant.target, clock=clock, **options)
    return grpc.intercept_channel(grpc.insecure_channel(plant.target), interceptor)


def test_interceptor_retries_unavailable_until_the_server_is_back(plant: PlantServer) -> None:
    plant.faults.code = grpc.StatusCode.UNAVAILABLE
    clock = FakeClock()
    clear_on_first_wait(clock, lambda: setattr(plant.faults, "code", None))
    with _intercepted(plant, clock) as ch:
        assert read(ch) == b"21.5 C from sensor-7"
    assert len(plant.faults.calls) == 2 and len(clock.sleeps) == 1


def test_interceptor_does_not_retry_a_permanent_status_and_labels_the_error(plant: PlantServer) -> None:
    plant.faults.code = grpc.StatusCode.INVALID_ARGUMENT
    plant.faults.details = "sensor id must be a number"
    clock = FakeClock()
    with _intercepted(plant, clock) as ch:
        err = _error(lambda: read(ch))
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(plant.faults.calls) == 1 and clock.sleeps == []
    t = ticket(policy(FakeClock(), attempts=1).call(lambda: (_ for _ in ()).throw(err)), FakeClock())
    assert t.facts["rpc_method"] == METHOD
    assert t.facts["address"] == plant.target
    assert f"rejected the request to {METHOD}: sensor id must be a number" in guidance_text(t)


def test_interceptor_gives_up_with_the_last_rpc_error(plant: PlantServer) -> None:
    plant.faults.code = grpc.StatusCode.UNAVAILABLE
    clock = FakeClock()
    with _intercepted(plant, clock, attempts=3, breakers=False) as ch:
        err = _error(lambda: read(ch))
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert len(plant.faults.calls) == 3


def test_interceptor_calls_no_retry_methods_once(plant: PlantServer) -> None:
    plant.faults.code = grpc.StatusCode.UNAVAILABLE
    clock = FakeClock()
    with _intercepted(plant, clock, no_retry={METHOD}) as ch:
        _error(lambda: read(ch))
    assert len(plant.faults.calls) == 1


def test_interceptor_honours_resource_exhausted_pushback(plant: PlantServer) -> None:
    plant.faults.code = grpc.StatusCode.RESOURCE_EXHAUSTED
    plant.faults.pushback_ms = 1500
    clock = FakeClock()
    clear_on_first_wait(clock, lambda: setattr(plant.faults, "code", None))
    with _intercepted(plant, clock) as ch:
        assert read(ch) == b"21.5 C from sensor-7"
    assert clock.sleeps == [1.5]


def test_interceptor_breaker_opens_for_the_channel(plant: PlantServer) -> None:
    from bounceback import CircuitBreaker, CircuitOpenError

    plant.faults.code = grpc.StatusCode.UNAVAILABLE
    clock = FakeClock()
    breaker = CircuitBreaker("plant", consecutive_failures=2, clock=clock)
    with _intercepted(plant, clock, attempts=1, breakers=lambda _name: breaker) as ch:
        for _ in range(2):
            _error(lambda: read(ch))
        with pytest.raises(CircuitOpenError):
            read(ch)
    assert len(plant.faults.calls) == 2


def test_async_interceptor_recovers_and_gives_up_like_the_sync_one(plant: PlantServer) -> None:
    import asyncio

    from bounceback.integrations import AsyncRecoveringInterceptor

    clock = FakeClock()

    async def main() -> tuple[bytes, grpc.StatusCode, str]:
        interceptor = AsyncRecoveringInterceptor(target=plant.target, attempts=3, clock=clock, breakers=False)
        async with grpc.aio.insecure_channel(plant.target, interceptors=[interceptor]) as ch:
            plant.faults.code = grpc.StatusCode.DEADLINE_EXCEEDED
            clear_on_first_wait(clock, lambda: setattr(plant.faults, "code", None))
            ok = await ch.unary_unary(METHOD)(b"sensor-7", timeout=5)
            clock.on_sleep = None
            plant.faults.code = grpc.StatusCode.PERMISSION_DENIED
            try:
                await ch.unary_unary(METHOD)(b"sensor-7", timeout=5)
            except grpc.aio.AioRpcError as exc:
                return ok, exc.code(), exc.bounceback_rpc  # type: ignore[attr-defined]
        raise AssertionError("no error")

    ok, code, method = asyncio.run(main())
    assert ok == b"21.5 C from sensor-7"
    assert method == METHOD
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert len(plant.faults.calls) == 3  # one failure, one success, one refusal not retried
