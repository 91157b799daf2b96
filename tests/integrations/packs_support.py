"""Shared parts of the error-pack tests: run a call under a policy on virtual time, open its ticket."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from bounceback import GiveUp, Policy
from bounceback.core.recovery._tickets import Ticket, open_ticket
from bounceback.testing import FakeClock

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def policy(clock: FakeClock, attempts: int = 4, operation: str = "plant-read") -> Policy:
    """A policy on virtual time whose give-up hands back the GiveUp record (to open a ticket from)."""
    return Policy(operation, attempts=attempts, clock=clock, fallback=lambda info: info)


def clear_on_first_wait(clock: FakeClock, clear: Callable[[], None]) -> None:
    """The fault clears while the policy waits before its second attempt (as a real fault would)."""

    def on_sleep(_seconds: float) -> None:
        if not clock.sleeps:
            clear()

    clock.on_sleep = on_sleep


def ticket(info: Any, clock: FakeClock) -> Ticket:
    """The ticket a person would get for this give-up."""
    assert isinstance(info, GiveUp), f"expected the policy to give up, got {info!r}"
    return open_ticket(info, now=clock.wall())


def guidance_text(t: Ticket) -> str:
    return "\n".join(step.text for step in t.guidance)


class LoopThread:
    """An asyncio loop in a thread, for servers the tests talk to with sync clients or from another loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    try:
        yield thread
    finally:
        thread.close()


async def first(awaitable: Awaitable[T]) -> T:
    return await awaitable
