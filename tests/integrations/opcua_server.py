"""A real OPC UA server (asyncua) on 127.0.0.1 with a line of a plant: nodes, rights, and a device link.

Its server runs on an event loop of its own thread, so tests drive a client from another loop and switch
the server's faults in between, as an operator would on the real machine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asyncua import Server, ua

from tests.integrations.packs_support import LoopThread, free_port

__all__ = ["OpcUaPlant", "opcua_plant"]


class OpcUaPlant:
    """``Line1.Temperature`` (read-only, 21.5), ``Line1.Setpoint`` (writable Double) in namespace ``urn:plant``.

    :meth:`link_down` makes the server report a status for the temperature instead of a value (as a
    gateway server does when its field device stops answering); :meth:`link_up` restores the value.
    """

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/plant/"
        self.server: Any = None
        self.ns = 0
        self.temperature: Any = None

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("bounceback test plant")
        self.ns = await server.register_namespace("urn:plant")
        line = await server.nodes.objects.add_object(self.ns, "Line1")
        self.temperature = await line.add_variable(f"ns={self.ns};s=Line1.Temperature", "Temperature", 21.5)
        setpoint = await line.add_variable(f"ns={self.ns};s=Line1.Setpoint", "Setpoint", 20.0)
        await setpoint.set_writable()
        await server.start()
        self.server = server

    def node_id(self, name: str) -> str:
        return f"ns={self.ns};s={name}"

    def start(self) -> None:
        self.loop.run(self._start(), timeout=60)

    def stop(self) -> None:
        if self.server is not None:
            self.loop.run(self.server.stop())
            self.server = None

    def link_down(self, status: int) -> None:
        value = ua.DataValue(StatusCode=ua.StatusCode(status))
        self.loop.run(self.temperature.write_value(value))

    def link_up(self) -> None:
        self.loop.run(self.temperature.write_value(ua.DataValue(ua.Variant(21.5, ua.VariantType.Double))))


@pytest.fixture(scope="module")
def opcua_plant() -> Iterator[OpcUaPlant]:
    # asyncua logs each refused request at WARNING; the tests assert on them instead.
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    loop = LoopThread()
    plant = OpcUaPlant(loop)
    plant.start()  # about 3 s: the server builds the standard address space once per module
    try:
        yield plant
    finally:
        plant.stop()
        loop.close()
