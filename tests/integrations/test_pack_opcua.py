"""The OPC UA error pack against a real asyncua server: unknown node, denied write, wrong type, link down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from asyncua import Client, ua

from bounceback import ErrorKind
from bounceback.classify import classify
from bounceback.integrations import opcua_node
from bounceback.testing import FakeClock
from tests.integrations.opcua_server import OpcUaPlant
from tests.integrations.packs_support import clear_on_first_wait, guidance_text, policy, ticket

T = TypeVar("T")


def with_client(plant: OpcUaPlant, work: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        client = Client(plant.endpoint, timeout=5)
        async with client:
            return await work(client)

    return asyncio.run(main())


def on_node(plant: OpcUaPlant, client: Client, name: str, op: Callable[[Any], Awaitable[Any]]) -> Any:
    node = client.get_node(plant.node_id(name))

    async def attempt() -> Any:
        with opcua_node(node, endpoint=plant.endpoint):
            return await op(node)

    return attempt


@pytest.mark.parametrize(
    ("name", "op", "status", "topic", "words"),
    [
        (
            "Line1.NoSuchSensor",
            lambda n: n.read_value(),
            "BadNodeIdUnknown",
            "opcua-node-unknown",
            "has no node",
        ),
        (
            "Line1.Temperature",
            lambda n: n.write_value(30.0),
            "BadUserAccessDenied",
            "opcua-access-denied",
            "rights on that node",
        ),
        (
            "Line1.Setpoint",
            lambda n: n.write_value("hot"),
            "BadTypeMismatch",
            "opcua-type-mismatch",
            "DataType",
        ),
    ],
)
def test_refusals_are_permanent_and_guidance_names_the_node(
    opcua_plant: OpcUaPlant, name: str, op: Any, status: str, topic: str, words: str
) -> None:
    clock = FakeClock()

    async def work(client: Client) -> Any:
        return await policy(clock).acall(on_node(opcua_plant, client, name, op))

    info = with_client(opcua_plant, work)
    assert clock.sleeps == []
    assert info.classification.kind is ErrorKind.PERMANENT
    assert type(info.error).__name__ == status
    t = ticket(info, clock)
    assert t.topic == topic
    assert t.facts["opcua_status"] == status
    assert t.facts["node_id"] == opcua_plant.node_id(name)
    text = guidance_text(t)
    assert words in text
    assert opcua_plant.node_id(name) in text


@pytest.mark.parametrize("status", ["BadCommunicationError", "BadTimeout", "BadWaitingForInitialData"])
def test_a_device_link_down_is_transient_and_recovers_when_it_is_back(
    opcua_plant: OpcUaPlant, status: str
) -> None:
    opcua_plant.link_down(getattr(ua.StatusCodes, status))
    clock = FakeClock()
    clear_on_first_wait(clock, opcua_plant.link_up)

    async def work(client: Client) -> Any:
        read = on_node(opcua_plant, client, "Line1.Temperature", lambda n: n.read_value())
        with pytest.raises(ua.UaStatusCodeError) as caught:
            await read()
        assert classify(caught.value).kind is ErrorKind.TRANSIENT
        return await policy(clock).acall(read)

    assert with_client(opcua_plant, work) == 21.5
    assert len(clock.sleeps) == 1


def test_link_down_guidance(opcua_plant: OpcUaPlant) -> None:
    opcua_plant.link_down(ua.StatusCodes.BadCommunicationError)
    clock = FakeClock()

    async def work(client: Client) -> Any:
        return await policy(clock, attempts=2).acall(
            on_node(opcua_plant, client, "Line1.Temperature", lambda n: n.read_value())
        )

    try:
        info = with_client(opcua_plant, work)
    finally:
        opcua_plant.link_up()
    t = ticket(info, clock)
    assert t.topic == "opcua-link"
    assert f"server at {opcua_plant.endpoint} failed (BadCommunicationError)" in guidance_text(t)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("BadTooManySessions", ErrorKind.THROTTLED),
        ("BadServerNotConnected", ErrorKind.TRANSIENT),
        ("BadResourceUnavailable", ErrorKind.THROTTLED),
        ("BadSessionClosed", ErrorKind.TRANSIENT),
    ],
)
def test_server_states_reported_as_a_value_status(
    opcua_plant: OpcUaPlant, status: str, kind: ErrorKind
) -> None:
    # asyncua's server has no session limit to exhaust; it reports these codes as it reports any status.
    opcua_plant.link_down(getattr(ua.StatusCodes, status))

    async def work(client: Client) -> BaseException:
        with pytest.raises(ua.UaStatusCodeError) as caught:
            await client.get_node(opcua_plant.node_id("Line1.Temperature")).read_value()
        return caught.value

    try:
        err = with_client(opcua_plant, work)
    finally:
        opcua_plant.link_up()
    assert type(err).__name__ == status
    assert classify(err).kind is kind


def test_server_down_is_transient_and_recovers_when_it_is_back(opcua_plant: OpcUaPlant) -> None:
    opcua_plant.stop()
    clock = FakeClock()
    clear_on_first_wait(clock, opcua_plant.start)

    async def read() -> Any:
        client = Client(opcua_plant.endpoint, timeout=5)
        async with client:
            return await client.get_node(opcua_plant.node_id("Line1.Temperature")).read_value()

    async def main() -> Any:
        with pytest.raises(OSError) as caught:
            await read()
        assert classify(caught.value).kind is ErrorKind.TRANSIENT
        return await policy(clock).acall(read)

    try:
        assert asyncio.run(main()) == 21.5
    finally:
        if opcua_plant.server is None:
            opcua_plant.start()
