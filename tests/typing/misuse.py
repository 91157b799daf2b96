"""Checked by mypy --strict (tests/test_typing.py), which must report an error on each marked line."""

from __future__ import annotations

from bounceback import Hedge, Policy, retry


@retry(attempts=3)
def read_register(address: int) -> bytes:
    return bytes([address])


read_register("seven")  # error: a decorated function keeps its parameter types
read_register(7, unit=2)  # error: and its parameter names
text: str = read_register(7)  # error: and its return type
retry(atempts=3)  # error: an option that does not exist
retry(attempts="3")  # error: an option of the wrong type
Policy("x", deadline="30s")  # error: durations are seconds or timedelta
Policy("x", hedge=0.2)  # error: a hedge is a Hedge, not its delay
retry(hedge=Hedge)  # error: an instance, not the class
