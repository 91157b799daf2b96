"""Checked by mypy --strict (tests/test_typing.py): what a user's editor and type checker see.

Nothing here runs as a test; ``assert_type`` fails the type check, not the program.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, assert_type

from bounceback import Backoff, CircuitBreaker, ErrorKind, Hedge, Policy, retry


@retry
def read_register(address: int, *, unit: int = 1) -> bytes:
    return bytes([address, unit])


@retry(attempts=3, deadline=timedelta(seconds=10), classifier=lambda exc: ErrorKind.PERMANENT)
def read_coil(address: int) -> bool:
    return address > 0


@Policy("pull-config", breaker=CircuitBreaker("plc"), deadline=5.0, backoff=Backoff(initial=0.1))
async def pull_config(host: str, port: int = 502) -> dict[str, str]:
    return {"host": host, "port": str(port)}


assert_type(read_register(7, unit=2), bytes)
assert_type(read_coil(3), bool)
pending = pull_config("10.0.0.7")
_ = assert_type(pending, Coroutine[Any, Any, dict[str, str]])
pending.close()
assert_type(asyncio.run(pull_config("10.0.0.7", port=503)), dict[str, str])
assert_type(retry(attempts=2), Policy)
assert_type(Policy("x").call(len, "abc"), int)

quotes = Policy("quotes", hedge=Hedge("quotes", delay="p95", idempotent=True), attempts=2)
assert_type(quotes.hedge, Hedge | None)


@retry(hedge=Hedge("read-replica", delay=0.05, idempotent=True))
async def read_replica(key: str) -> bytes:
    return key.encode()


assert_type(asyncio.run(read_replica("k")), bytes)
