"""The demo's industrial devices: a real Modbus TCP server (pymodbus) and a real OPC UA server (asyncua).

Both listen on 127.0.0.1 beside the HTTP fleet, on an event loop of their own thread, with their own
faults: a PLC that answers *device busy* twice, an RTU whose Modbus gateway gets no answer from it once, an
energy meter asked for a register it does not have (an old register map), and an OPC UA server whose field
link is down for a few seconds (``BadCommunicationError``) before it serves values again. The client side
reads them as a plant program would, through pymodbus and asyncua, and the error packs classify what they
raise: the busy PLC, the gateway and the link are recovered; the register needs a person.

The servers need the ``modbus`` and ``opcua`` extras; without them the demo runs without these devices.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from bounceback.demo._fleet import Device, free_port

__all__ = ["PLANT_DEVICES", "PlantDevices", "plant_available"]

T = TypeVar("T")

PLANT_DEVICES: tuple[Device, ...] = (
    Device(
        "plc-09", "filling PLC (Modbus TCP)", "modbus-busy", "answers 'device busy' twice, then its registers"
    ),
    Device(
        "rtu-10",
        "tank RTU behind a Modbus gateway",
        "modbus-gateway",
        "its gateway gets no answer from it once (gateway target failed to respond)",
    ),
    Device(
        "meter-11", "energy meter (Modbus TCP)", "modbus-address", "asked for register 4000, which it lacks"
    ),
    Device(
        "line-12",
        "line 1 OPC UA server",
        "opcua-link",
        "reports BadCommunicationError while its field link is down, then values",
    ),
)
"""The industrial devices, in display order."""

# device -> (Modbus unit id, register the job reads)
_MODBUS = {"plc-09": (1, 10), "rtu-10": (2, 20), "meter-11": (3, 4000)}
_REGISTERS = 100  # registers 0..99 exist on every Modbus device
_NODE = "ns=2;s=Line1.Temperature"


def _lib(name: str) -> Any:
    # The servers' libraries are optional extras and only partly typed: used through plain attributes.
    return importlib.import_module(name)


def plant_available() -> bool:
    """True when pymodbus and asyncua are installed (the ``modbus`` and ``opcua`` extras)."""
    try:
        import asyncua  # noqa: F401
        import pymodbus  # noqa: F401
    except ImportError:
        return False
    return True


class PlantDevices:
    """The Modbus and OPC UA servers. ``with PlantDevices(speed=10) as plant: plant.read("plc-09")``.

    ``link_seconds`` is how long line-12's field link stays down from its first request on (divided by
    ``speed``). The OPC UA server takes a few seconds to build its address space: it starts in the
    background, and :meth:`read` of line-12 waits for it.
    """

    def __init__(self, *, speed: float = 1.0, link_seconds: float = 4.0, timeout: float = 3.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed: got {speed!r}; expected a number > 0 (1 is real time)")
        self.link_seconds = link_seconds / speed
        self.timeout = timeout
        self.modbus_port = free_port()
        self.opcua_port = free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.opcua_port}/plant/"
        self.requests = dict.fromkeys(_MODBUS, 0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-plant", daemon=True)
        self._modbus: Any = None
        self._opcua: Any = None
        self._opcua_ready: Future[None] | None = None
        self._link_task: Any = None
        self._link_back: Any = None

    # -- lifecycle -----------------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> PlantDevices:
        """Start the Modbus server (at once) and the OPC UA server (in the background)."""
        # Both libraries log each refused request and their own deprecations at WARNING; the demo shows
        # what bounceback makes of them instead.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        self._thread.start()
        self._run(self._start_modbus())
        self._opcua_ready = asyncio.run_coroutine_threadsafe(self._start_opcua(), self._loop)
        return self

    def stop(self) -> None:
        """Stop both servers and the loop."""
        if self._opcua_ready is not None:
            try:
                self._opcua_ready.result(60)
            except Exception:  # a server that failed to start has nothing to stop
                self._opcua = None
        self._run(self._stop_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> PlantDevices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, name: str) -> str:
        """Where device ``name`` answers."""
        if name in _MODBUS:
            unit, address = _MODBUS[name]
            return f"modbus://127.0.0.1:{self.modbus_port}/unit/{unit}/register/{address}"
        return f"{self.endpoint}#{_NODE}"

    # -- servers -------------------------------------------------------------------------------------

    async def _action(self, name: str, *_args: Any) -> Any:
        ExcCodes = _lib("pymodbus.constants").ExcCodes

        self.requests[name] += 1
        n = self.requests[name]
        if name == "plc-09" and n <= 2:
            return ExcCodes.DEVICE_BUSY
        if name == "rtu-10" and n <= 1:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return None

    async def _start_modbus(self) -> None:
        ModbusTcpServer = _lib("pymodbus.server").ModbusTcpServer
        sim = _lib("pymodbus.simulator")
        DataType, SimData, SimDevice = sim.DataType, sim.SimData, sim.SimDevice

        devices = [
            SimDevice(
                id=unit,
                simdata=[
                    SimData(address=0, count=_REGISTERS, values=215 + unit, datatype=DataType.REGISTERS)
                ],
                action=functools.partial(self._action, name),
            )
            for name, (unit, _address) in _MODBUS.items()
        ]
        self._modbus = ModbusTcpServer(devices, address=("127.0.0.1", self.modbus_port))
        await self._modbus.serve_forever(background=True)

    async def _start_opcua(self) -> None:
        asyncua = _lib("asyncua")
        ua = asyncua.ua
        server = asyncua.Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("bounceback demo: line 1")
        ns = await server.register_namespace("urn:bounceback:demo:line1")
        line = await server.nodes.objects.add_object(ns, "Line1")
        node = await line.add_variable(_NODE.replace("ns=2", f"ns={ns}"), "Temperature", 21.5)
        await server.start()
        self._opcua = server
        # The field link is down for a while from the first request on (as the HTTP devices' outages are):
        # the server reports the status instead of a value, then serves values again.
        await node.write_value(ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError)))
        loop = asyncio.get_running_loop()

        def link_back() -> None:
            # Kept on self: a task nobody references may be collected before it runs.
            self._link_back = asyncio.ensure_future(
                node.write_value(ua.DataValue(ua.Variant(21.5, ua.VariantType.Double)))
            )

        def first_request(_event: Any, _dispatcher: Any) -> None:
            if self._link_task is None:
                self._link_task = loop.call_later(self.link_seconds, link_back)

        server.subscribe_server_callback(_lib("asyncua.common.callback").CallbackType.PreRead, first_request)

    async def _stop_all(self) -> None:
        if self._link_task is not None:
            self._link_task.cancel()
        if self._modbus is not None:
            await self._modbus.shutdown()
        if self._opcua is not None:
            await self._opcua.stop()

    # -- the client side, as a plant program reads ----------------------------------------------------

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the OPC UA server serves (it builds its address space first)."""
        if self._opcua_ready is not None:
            self._opcua_ready.result(timeout)

    def read(self, name: str) -> dict[str, Any]:
        """One attempt to read device ``name``; raises what pymodbus or asyncua raise."""
        if name in _MODBUS:
            return self._read_modbus(name)
        return asyncio.run(self._read_opcua())

    def _read_modbus(self, name: str) -> dict[str, Any]:
        from bounceback.integrations._modbus import raise_for_modbus

        ModbusTcpClient = _lib("pymodbus.client").ModbusTcpClient

        unit, address = _MODBUS[name]
        client = ModbusTcpClient("127.0.0.1", port=self.modbus_port, timeout=self.timeout, retries=0)
        try:
            client.connect()
            answer = client.read_holding_registers(address, count=2, device_id=unit)
            response = raise_for_modbus(answer, address=address, client=client)
            return {"registers": list(response.registers), "unit": unit, "address": address}
        finally:
            client.close()

    async def _read_opcua(self) -> dict[str, Any]:
        from bounceback.integrations._opcua import opcua_node

        started = time.monotonic()
        client = _lib("asyncua").Client(self.endpoint, timeout=self.timeout)
        async with client:
            ns = await client.get_namespace_index("urn:bounceback:demo:line1")
            node_id = _NODE.replace("ns=2", f"ns={ns}")
            with opcua_node(node_id, endpoint=self.endpoint):
                value = await client.get_node(node_id).read_value()
        return {"temperature_c": value, "read_ms": round((time.monotonic() - started) * 1000)}
