"""Error packs: registered by module, imported on the first error of their library, cached per type."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from bounceback import ConfigError, ErrorKind, Policy, on_type
from bounceback.classify import ErrorPack, classify, register_pack, unregister_pack
from bounceback.core.classify._packs import pack_for
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.recovery._tickets import open_ticket
from bounceback.testing import FakeClock

SAMPLE = "tests.core.classify.pack_sample"


class PumpError(Exception):
    def __init__(self, message: str, pump: str = "P-101") -> None:
        super().__init__(message)
        self.pump = pump


PumpError.__module__ = "pumpco.errors"  # as if raised by the pumpco client library


class MyPumpError(PumpError):
    """A program's own subclass of the library's error: still the library's pack."""


MyPumpError.__module__ = __name__


@pytest.fixture
def pumpco() -> Iterator[None]:
    sys.modules.pop(SAMPLE, None)
    register_pack("pumpco", f"{SAMPLE}:PACK")
    yield
    unregister_pack("pumpco")


def test_a_pack_is_imported_only_when_one_of_its_errors_is_classified(pumpco: None) -> None:
    assert SAMPLE not in sys.modules
    classify(ValueError("x"))
    classify(ConnectionResetError())
    assert SAMPLE not in sys.modules
    assert classify(PumpError("runs dry")).reason == "the pump runs dry"
    assert SAMPLE in sys.modules
    classify(PumpError("runs dry again"))
    assert sys.modules[SAMPLE].LOADS == [1]


def test_subclasses_defined_elsewhere_use_the_librarys_pack(pumpco: None) -> None:
    assert classify(MyPumpError("runs dry")).kind is ErrorKind.PERMANENT
    assert pack_for(MyPumpError) is pack_for(PumpError) is not None


def test_an_error_the_pack_does_not_know_gets_the_defaults(pumpco: None) -> None:
    assert classify(PumpError("odd noise")).reason == "unclassified error (default: transient)"


def test_a_failing_pack_is_logged_and_the_defaults_apply(
    pumpco: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert classify(PumpError("surge")).kind is ErrorKind.TRANSIENT
    assert "failed to classify PumpError" in caplog.text


def test_a_pack_that_cannot_be_imported_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    register_pack("pumpco", "tests.core.no_such_module:PACK")
    try:
        assert classify(PumpError("runs dry")).kind is ErrorKind.TRANSIENT
        classify(PumpError("runs dry"))
        assert caplog.text.count("could not be loaded") == 1
    finally:
        unregister_pack("pumpco")


def test_a_programs_rules_come_before_the_packs(pumpco: None) -> None:
    mine = DEFAULT_CLASSIFIER.with_rules(on_type(PumpError, kind="transient", reason="ours"))
    assert mine.classify(PumpError("runs dry")).reason == "ours"


def test_registering_a_pack_forgets_verdicts_cached_before_it(pumpco: None) -> None:
    unregister_pack("pumpco")
    assert classify(PumpError("runs dry")).kind is ErrorKind.TRANSIENT
    register_pack("pumpco", f"{SAMPLE}:PACK")
    assert classify(PumpError("runs dry")).kind is ErrorKind.PERMANENT


def test_pack_facts_topic_and_steps_reach_the_ticket(pumpco: None) -> None:
    clock = FakeClock()

    def fail() -> None:
        raise PumpError("runs dry", pump="P-7")

    info = Policy("fill-tank", attempts=3, clock=clock, fallback=lambda i: i).call(fail)
    ticket = open_ticket(info, now=clock.wall())
    assert ticket.topic == "pump-dry"
    assert ticket.facts["pump"] == "P-7"
    assert ticket.guidance[0].text == "Prime pump P-7 and open its suction valve."


@pytest.mark.parametrize(
    ("modules", "pack", "field"),
    [
        ("", "x:Y", "modules"),
        ("pumpco.errors", "x:Y", "modules"),
        ("pumpco", "no-colon", "pack"),
        ("pumpco", 42, "pack"),
    ],
)
def test_bad_registrations_name_the_field(modules: str, pack: object, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        register_pack(modules, pack)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_bad_pack_names_the_field() -> None:
    with pytest.raises(ConfigError) as caught:
        ErrorPack("Pumps!", lambda e: None)
    assert caught.value.field == "name"
    with pytest.raises(ConfigError) as caught:
        ErrorPack("pumps", lambda e: None, steps={"Bad Topic": ()})
    assert caught.value.field == "steps"


def test_importing_bounceback_and_succeeding_imports_no_client_library_nor_pack() -> None:
    code = textwrap.dedent(
        """
        import sys, bounceback, bounceback.classify
        policy = bounceback.Policy("ok", attempts=3)
        assert policy.call(lambda: 42) == 42
        bounceback.classify.classify(ConnectionResetError())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        {"grpc", "redis", "pymodbus", "asyncua", "aiohttp", "psycopg"} or "_pack_" in m)
        print(loaded)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
