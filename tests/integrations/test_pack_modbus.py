"""The Modbus error pack against a real pymodbus TCP server: busy, gateway, bad address, no connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient, ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException

from bounceback import ErrorKind, Policy
from bounceback.classify import classify
from bounceback.integrations import ModbusResponseError, is_modbus_error, raise_for_modbus
from bounceback.testing import FakeClock
from tests.integrations.modbus_server import ModbusDevice
from tests.integrations.packs_support import clear_on_first_wait, guidance_text, policy, ticket


@pytest.fixture
def client(modbus_device: ModbusDevice) -> Iterator[ModbusTcpClient]:
    c = ModbusTcpClient("127.0.0.1", port=modbus_device.port, timeout=2, retries=0)
    assert c.connect()
    yield c
    c.close()


def read(client: ModbusTcpClient, address: int = 10) -> list[int]:
    response = raise_for_modbus(
        client.read_holding_registers(address, count=2, device_id=1), address=address, client=client
    )
    registers: list[int] = response.registers
    return registers


def test_a_healthy_device_answers(client: ModbusTcpClient) -> None:
    assert read(client) == [215, 215]


@pytest.mark.parametrize("fault", [ExcCodes.DEVICE_BUSY, ExcCodes.GATEWAY_NO_RESPONSE, ExcCodes.ACKNOWLEDGE])
def test_busy_and_gateway_faults_are_transient_and_recover(
    modbus_device: ModbusDevice, client: ModbusTcpClient, fault: ExcCodes
) -> None:
    modbus_device.fault = fault
    with pytest.raises(ModbusResponseError) as caught:
        read(client)
    assert caught.value.exception_code == fault
    assert classify(caught.value).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    clear_on_first_wait(clock, lambda: setattr(modbus_device, "fault", None))
    assert policy(clock).call(lambda: read(client)) == [215, 215]
    assert len(clock.sleeps) == 1


def test_device_busy_guidance_names_device_function_and_address(
    modbus_device: ModbusDevice, client: ModbusTcpClient
) -> None:
    modbus_device.fault = ExcCodes.DEVICE_BUSY
    clock = FakeClock()
    info = policy(clock, attempts=3).call(lambda: read(client))
    assert modbus_device.requests == 3
    t = ticket(info, clock)
    assert t.topic == "modbus-device-busy"
    text = guidance_text(t)
    assert (
        f"device 1 at 127.0.0.1:{modbus_device.port} answered device busy (6) to read holding registers (3)"
        in text
    )


def test_gateway_guidance_points_at_the_serial_line(
    modbus_device: ModbusDevice, client: ModbusTcpClient
) -> None:
    modbus_device.fault = ExcCodes.GATEWAY_NO_RESPONSE
    clock = FakeClock()
    t = ticket(policy(clock, attempts=2).call(lambda: read(client)), clock)
    assert t.topic == "modbus-gateway"
    assert "could not reach device 1" in guidance_text(t)
    assert "unit id 1 is routed" in guidance_text(t)


def test_an_illegal_address_is_permanent_and_guidance_names_the_register(client: ModbusTcpClient) -> None:
    clock = FakeClock()
    info = policy(clock).call(lambda: read(client, address=4000))
    assert clock.sleeps == []
    assert info.classification.kind is ErrorKind.PERMANENT
    assert "illegal data address (2)" in info.classification.reason
    t = ticket(info, clock)
    assert t.topic == "modbus-bad-address"
    assert t.facts["register"] == "4000"
    assert "Device 1 has no register 4000" in guidance_text(t)
    assert "manual's 4001 may be address 4000" in guidance_text(t)


def test_an_illegal_function_is_permanent(modbus_device: ModbusDevice, client: ModbusTcpClient) -> None:
    modbus_device.fault = ExcCodes.ILLEGAL_FUNCTION
    with pytest.raises(ModbusResponseError) as caught:
        raise_for_modbus(client.write_register(3, 7, device_id=1), address=3)
    assert classify(caught.value).kind is ErrorKind.PERMANENT
    clock = FakeClock()
    t = ticket(policy(clock).call(lambda: (_ for _ in ()).throw(caught.value)), clock)
    assert t.topic == "modbus-rejected"
    assert "write single register (6)" in guidance_text(t)


def test_retry_if_result_sees_error_responses_too(
    modbus_device: ModbusDevice, client: ModbusTcpClient
) -> None:
    modbus_device.fault = ExcCodes.DEVICE_BUSY
    clock = FakeClock()
    clear_on_first_wait(clock, lambda: setattr(modbus_device, "fault", None))
    p = Policy("plant-read", attempts=3, clock=clock, retry_if_result=is_modbus_error)
    response = p.call(lambda: client.read_holding_registers(10, count=1, device_id=1))
    assert response.registers == [215]


def test_no_connection_is_transient_and_recovers_when_the_device_is_back(modbus_device: ModbusDevice) -> None:
    modbus_device.stop()
    c = ModbusTcpClient("127.0.0.1", port=modbus_device.port, timeout=1, retries=0)

    def attempt() -> list[int]:
        return read(c)

    with pytest.raises(ConnectionException) as caught:
        attempt()
    assert classify(caught.value).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    info = policy(clock, attempts=2).call(attempt)
    t = ticket(info, clock)
    assert t.topic == "modbus-unreachable"
    assert f"at 127.0.0.1:{modbus_device.port} is powered" in guidance_text(t)

    clock = FakeClock()
    clear_on_first_wait(clock, modbus_device.start)
    assert policy(clock).call(attempt) == [215, 215]
    c.close()


def test_the_async_client_too(modbus_device: ModbusDevice) -> None:
    modbus_device.fault = ExcCodes.DEVICE_BUSY

    async def main() -> Any:
        c = AsyncModbusTcpClient("127.0.0.1", port=modbus_device.port, timeout=2, retries=0)
        await c.connect()
        clock = FakeClock()
        clear_on_first_wait(clock, lambda: setattr(modbus_device, "fault", None))

        async def attempt() -> Any:
            return raise_for_modbus(await c.read_input_registers(1, count=1, device_id=1), address=1)

        try:
            return (await policy(clock).acall(attempt)).registers, clock.sleeps
        finally:
            c.close()

    registers, sleeps = asyncio.run(main())
    assert registers == [215] and len(sleeps) == 1
