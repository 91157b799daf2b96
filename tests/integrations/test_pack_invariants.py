"""Invariants of the shipped packs, for any text a remote server may send, and guidance ranked by outcomes."""

from __future__ import annotations

import grpc
import psycopg
import redis
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback import Classification, ErrorKind, Policy
from bounceback.classify import classify
from bounceback.core.classify._facts import error_facts
from bounceback.core.recovery._tickets import Record, open_ticket, rank, step_item
from bounceback.integrations import raise_for_modbus
from bounceback.integrations._modbus import ModbusResponseError
from bounceback.testing import FakeClock

TEXT = st.text(max_size=300)


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_any_redis_reply_is_classified_without_raising_and_by_its_first_word(reply: str) -> None:
    verdict = classify(redis.ResponseError(reply))
    assert isinstance(verdict, Classification)
    word = reply.split(" ", maxsplit=1)[0]
    if word in ("BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"):
        assert verdict.kind is ErrorKind.TRANSIENT
    elif reply[:1].isspace() or not reply:
        assert verdict.kind is ErrorKind.PERMANENT  # an error reply without a code is still an answer


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_any_postgres_text_is_classified_and_its_facts_are_clean(text: str) -> None:
    err = psycopg.OperationalError(text)
    assert classify(err).kind in (ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED)
    for value in error_facts(err, now=0).values():
        assert "\x1b" not in value and "\n" not in value and len(value) <= 200


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=0, max_value=255), st.integers(min_value=1, max_value=127), st.integers(0, 65535)
)
def test_every_modbus_exception_code_classifies_and_names_its_facts(
    code: int, function: int, address: int
) -> None:
    from pymodbus.pdu import ExceptionResponse

    try:
        raise_for_modbus(ExceptionResponse(function, exception_code=code, device_id=1), address=address)
    except ModbusResponseError as err:
        verdict = classify(err)
        assert verdict.is_retryable is (code in (5, 6, 10, 11))
        facts = error_facts(err, verdict, now=0)
        assert facts["register"] == str(address) and facts["device"] == "1"
    else:
        raise AssertionError("an exception response must raise")


def test_every_opcua_bad_status_has_a_verdict() -> None:
    names = [n for n in dir(ua.StatusCodes) if n.startswith("Bad")]
    assert len(names) > 200
    for name in names:
        err = ua.UaStatusCodeError(getattr(ua.StatusCodes, name))
        assert classify(err).reason.startswith("OPC UA "), name


def test_every_grpc_status_but_ok_has_a_verdict() -> None:
    class Failed(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    for code in grpc.StatusCode:
        if code is grpc.StatusCode.OK:
            continue
        assert classify(Failed(code)).reason.startswith(f"gRPC {code.name}"), code


def test_pack_steps_are_ranked_by_past_outcomes_of_their_topic() -> None:
    from pymodbus.pdu import ExceptionResponse

    clock = FakeClock()
    busy = ExceptionResponse(3, exception_code=6, device_id=4)
    info = Policy("read-plc", attempts=2, clock=clock, fallback=lambda i: i).call(
        lambda: raise_for_modbus(busy, address=7)
    )
    ticket = open_ticket(info, now=clock.wall())
    assert [s.key for s in ticket.guidance][:2] == ["modbus-busy-wait", "modbus-poll-rate"]
    # Last times, checking for a second master is what worked on this topic: it comes first now.
    ranked = rank(
        ticket, {step_item("modbus-poll-rate"): Record(4, 4), step_item("modbus-busy-wait"): Record(4, 0)}
    )
    assert ranked.guidance[0].key == "modbus-poll-rate"
    assert "worked 4 of 4 times" in ranked.guidance[0].record.text()
