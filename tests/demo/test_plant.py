"""The demo's industrial devices: a real Modbus TCP server and a real OPC UA server, each with its fault."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from asyncua import ua

from bounceback import ErrorKind, Policy
from bounceback.classify import classify
from bounceback.demo._plant import PLANT_DEVICES, PlantDevices, plant_available
from bounceback.integrations import ModbusResponseError
from bounceback.testing import FakeClock


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantDevices]:
    with PlantDevices(speed=100) as p:
        yield p


def test_the_extras_are_installed_in_ci() -> None:
    assert plant_available()
    assert [d.fault for d in PLANT_DEVICES] == [
        "modbus-busy",
        "modbus-gateway",
        "modbus-address",
        "opcua-link",
    ]


def test_the_plc_is_busy_twice_then_answers(plant: PlantDevices) -> None:
    for _ in range(2):
        with pytest.raises(ModbusResponseError) as caught:
            plant.read("plc-09")
        assert caught.value.exception_code == 6
        assert classify(caught.value).kind is ErrorKind.TRANSIENT
    assert plant.read("plc-09")["registers"] == [216, 216]


def test_the_rtus_gateway_gets_no_answer_once(plant: PlantDevices) -> None:
    clock = FakeClock()
    assert Policy("rtu", attempts=3, clock=clock).call(plant.read, "rtu-10")["registers"] == [217, 217]
    assert plant.requests["rtu-10"] == 2 and len(clock.sleeps) == 1


def test_the_meter_has_no_such_register(plant: PlantDevices) -> None:
    with pytest.raises(ModbusResponseError) as caught:
        plant.read("meter-11")
    assert (caught.value.exception_code, caught.value.address) == (2, 4000)
    assert classify(caught.value).kind is ErrorKind.PERMANENT


def test_the_line_server_reports_its_link_down_then_serves(plant: PlantDevices) -> None:
    plant.wait_ready()
    errors: list[BaseException] = []
    value = None
    for _ in range(400):
        try:
            value = plant.read("line-12")
            break
        except ua.UaStatusCodeError as exc:
            errors.append(exc)
        time.sleep(0.01)  # the link comes back on the server's own (real, scaled) schedule: a bounded poll
    assert value is not None and value["temperature_c"] == 21.5
    assert {type(e).__name__ for e in errors} <= {"BadCommunicationError"}
    assert all(classify(e).kind is ErrorKind.TRANSIENT for e in errors)


def test_bad_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed: got 0"):
        PlantDevices(speed=0)
