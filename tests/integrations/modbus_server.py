"""A real Modbus TCP server (pymodbus) on 127.0.0.1 whose device faults a test switches on and off."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.integrations.packs_support import LoopThread, free_port

__all__ = ["ModbusDevice", "modbus_device"]

REGISTERS = 100  # holding registers 0..99 exist; 100 and up are an illegal data address


class ModbusDevice:
    """Device 1 (registers 0..99, each 215 = 21.5 °C) behind a real pymodbus TCP server.

    ``fault`` is an exception code the device answers every request with (``ExcCodes.DEVICE_BUSY``,
    ``ExcCodes.GATEWAY_NO_RESPONSE`` ...), or None for normal answers; ``requests`` counts the requests.
    """

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.port = free_port()
        self.fault: ExcCodes | None = None
        self.requests = 0
        self.server: Any = None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        self.requests += 1
        return self.fault

    async def _start(self) -> None:
        device = SimDevice(
            id=1,
            simdata=[SimData(address=0, count=REGISTERS, values=215, datatype=DataType.REGISTERS)],
            action=self._action,
        )
        self.server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await self.server.serve_forever(background=True)

    def start(self) -> None:
        self.loop.run(self._start())

    def stop(self) -> None:
        if self.server is not None:
            self.loop.run(self.server.shutdown())
            self.server = None


@pytest.fixture
def modbus_device() -> Iterator[ModbusDevice]:
    # pymodbus logs every refused connection and its deprecations at WARNING; keep test output readable.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    loop = LoopThread()
    device = ModbusDevice(loop)
    device.start()
    try:
        yield device
    finally:
        device.stop()
        loop.close()
