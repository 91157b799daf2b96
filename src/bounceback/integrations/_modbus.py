"""pymodbus error responses as errors: :func:`raise_for_modbus` and :class:`ModbusResponseError`.

pymodbus answers a device's refusal (busy, illegal address, gateway without answer) with an exception
*response object*, not an exception, so neither a retry rule nor a person ever sees it. Turn it into an
error inside the attempt, and the Modbus pack classifies it (busy and gateway faults are retried, a bad
address or function is not) and words the guidance with the device, function and register:

>>> from pymodbus.pdu import ExceptionResponse
>>> from bounceback.classify import classify
>>> busy = ExceptionResponse(3, exception_code=6, device_id=1)
>>> try:
...     raise_for_modbus(busy, address=100)
... except ModbusResponseError as err:
...     print(err, "->", classify(err).kind.value)
Modbus device 1 answered read holding registers (3) at register 100: device busy (6) -> transient

Prefer this over ``retry_if_result=is_modbus_error``: that retries too, but every refusal alike, and the
ticket can only show the returned object.
"""

from __future__ import annotations

from typing import Any

from pymodbus.exceptions import ModbusException

__all__ = [
    "EXCEPTION_NAMES",
    "FUNCTION_NAMES",
    "ModbusResponseError",
    "is_modbus_error",
    "raise_for_modbus",
]

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge (still working)",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
"""Modbus exception codes (Modbus Application Protocol, section 7) and their names."""

FUNCTION_NAMES = {
    1: "read coils",
    2: "read discrete inputs",
    3: "read holding registers",
    4: "read input registers",
    5: "write single coil",
    6: "write single register",
    15: "write multiple coils",
    16: "write multiple registers",
    22: "mask write register",
    23: "read/write multiple registers",
    43: "read device identification",
}
"""Modbus function codes and their names."""


class ModbusResponseError(ModbusException):
    """A Modbus exception response, raised: ``exception_code``, ``function_code`` (without the 0x80 bit),
    ``device_id``, and the ``address``, ``host`` and ``port`` when the caller gave them."""

    def __init__(
        self,
        exception_code: int,
        function_code: int,
        device_id: int,
        *,
        address: int | None = None,
        host: str | None = None,
        port: int | None = None,
        response: Any = None,
    ) -> None:
        self.exception_code = exception_code
        self.function_code = function_code
        self.device_id = device_id
        self.address = address
        self.host = host
        self.port = port
        self.response = response
        what = f"{FUNCTION_NAMES.get(function_code, 'function')} ({function_code})"
        where = f" at register {address}" if address is not None else ""
        at = f" [{host}:{port}]" if host and port else ""
        super().__init__(
            f"Modbus device {device_id} answered {what}{where}: "
            f"{EXCEPTION_NAMES.get(exception_code, 'exception')} ({exception_code}){at}"
        )
        # ModbusException prefixes its text with "Modbus Error: "; a person reads the plain sentence.
        self.args = (self.string,)

    def __str__(self) -> str:
        return self.string


def is_modbus_error(response: Any) -> bool:
    """True for a pymodbus exception response (for ``retry_if_result``)."""
    check = getattr(response, "isError", None)
    return bool(check()) if callable(check) else False


def raise_for_modbus(response: Any, *, address: int | None = None, client: Any = None) -> Any:
    """Return ``response``, or raise :class:`ModbusResponseError` when it is an exception response.

    ``address`` (the register asked for) and ``client`` (for its host and port) make the error and the
    guidance precise. Call it inside the attempt::

        policy.call(lambda: raise_for_modbus(client.read_holding_registers(100, count=2), address=100))
    """
    if not is_modbus_error(response):
        return response
    params = getattr(client, "comm_params", None)
    host = getattr(params, "host", None)
    port = getattr(params, "port", None)
    raise ModbusResponseError(
        int(getattr(response, "exception_code", 0) or 0),
        int(getattr(response, "function_code", 0) or 0) & 0x7F,
        int(getattr(response, "dev_id", 0) or 0),
        address=address,
        host=host if isinstance(host, str) else None,
        port=port if isinstance(port, int) else None,
        response=response,
    )
