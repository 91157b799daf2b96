"""Bad input, generated: settings values and documents, Retry-After headers, CLI arguments, ticket resolutions.

Each: no crash other than a clear error (a ConfigError naming the field and the bad value, or exit code 2
with an ``error:`` line), and on refusal nothing stored changes (database snapshots compared).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import ConfigError, StoreError
from bounceback.classify import parse_retry_after
from bounceback.cli import cli
from bounceback.core.recovery._tickets import open_ticket
from bounceback.core.retry._engine import GiveUp
from bounceback.core.settings._source import SCHEMA
from bounceback.integrations._httpx import RecoveringTransport
from bounceback.stores import SqliteSettings
from bounceback.stores._tickets import SqliteTickets
from bounceback.testing import FakeClock
from tests.core.settings.settings_strategies import values
from tests.http_server import Reply, Script, serve
from tests.reliability.conftest import ROOT, Figures, soak_size
from tests.reliability.dbcheck import consistency_problems, stored_data

EXAMPLES = soak_size(150, 2000)
FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

# Hostile text: control characters, bidi overrides, NUL, lone surrogates excluded (SQLite cannot hold them).
WILD_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=0), max_size=60
) | st.sampled_from(
    ["", " ", "nan", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "\uff11\uff12", "5ms5", "off", "none", "yes",
     "\x00", "\u202e5", "9" * 400, "1,2,3", "300,1", "-1", "3.5", "2 s", "1h30m", "${HOME}", "'; DROP TABLE x"]
)  # fmt: skip
WILD_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | WILD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WILD_TEXT, inner, max_size=3),
    max_leaves=6,
)


def _near_valid(key: str) -> st.SearchStrategy[Any]:
    """Valid values of ``key`` (typed and as text), and wild ones."""
    setting = SCHEMA[key]
    valid = values(setting)
    return valid | valid.map(setting.to_text) | WILD_VALUE


KEY_AND_VALUE = st.sampled_from(sorted(SCHEMA)).flatmap(
    lambda k: st.tuples(st.just(k), _near_valid(k))
) | st.tuples(WILD_TEXT, WILD_VALUE)
OPERATIONS = st.none() | st.sampled_from(["fetch", "pay-ment.v2", "", " ", "a" * 201, "x\ny", "\x1b[31m"])


def _clear(exc: ConfigError) -> None:
    """A refusal that says what, the value, and what would be accepted."""
    text = str(exc)
    assert exc.field and exc.allowed and "got " in text and "expected" in text, text


@pytest.fixture
def db(home: Path) -> Path:
    return home / "bounceback.db"


def test_settings_values_refused_cleanly_and_nothing_stored(
    db: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("input-settings-values")
    store = SqliteSettings(db)
    store.set("retry.max_attempts", 4)
    tally = {"stored": 0, "refused": 0}

    @given(pair=KEY_AND_VALUE, operation=OPERATIONS)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=FIXTURE_OK)
    def check(pair: tuple[str, Any], operation: str | None) -> None:
        key, value = pair
        before = stored_data(db)
        try:
            change = store.set(key, value, operation=operation)
        except ConfigError as exc:
            _clear(exc)
            tally["refused"] += 1
            assert stored_data(db) == before
            return
        tally["stored"] += 1
        setting = SCHEMA[key.strip()] if key.strip() in SCHEMA else None
        assert setting is not None, f"an unknown key was stored: {key!r}"
        stored = store.get(key, operation=operation).value
        assert setting.validate(stored) == stored  # what is stored is valid and normalised
        if change is not None:
            with SqliteSettings(db) as fresh:  # a new reader sees the same value
                assert fresh.get(key, operation=operation).value == stored

    check()
    store.close()
    assert consistency_problems(db) == []
    assert tally["refused"] > 0
    fig.tries = tally["stored"] + tally["refused"]
    fig.result = (
        f"{tally['refused']} refused with field, value and allowed range, database unchanged; "
        f"{tally['stored']} valid ones stored normalised"
    )


def test_settings_documents_import_all_or_nothing(db: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("input-settings-import")
    store = SqliteSettings(db)
    store.set("retry.max_attempts", 4)
    tally = {"imported": 0, "refused": 0}
    section = st.sampled_from(["retry", "breaker", "run", "manual", "journal", "store", "nope", "operations"])
    name = st.sampled_from(["max_attempts", "initial_delay", "failure_rate", "mode", "backend", "x", "fetch"])
    document = st.dictionaries(
        section, st.dictionaries(name, WILD_VALUE, max_size=4) | WILD_VALUE, max_size=4
    )

    @given(doc=document, replace=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=FIXTURE_OK)
    def check(doc: dict[str, Any], replace: bool) -> None:
        before = stored_data(db)
        try:
            store.import_document(doc, replace=replace, source="fuzz.toml")
        except ConfigError as exc:
            _clear(exc)
            assert "nothing was imported" in str(exc) or exc.field, str(exc)  # noqa: PT017
            assert stored_data(db) == before
            tally["refused"] += 1
            return
        tally["imported"] += 1
        assert consistency_problems(db) == []

    check()
    # Text that is not a document at all, through the CLI: refused with the line, nothing stored.
    before = stored_data(db)
    bad = db.parent / "bad.toml"
    for text in ["[retry\nmax_attempts = 3", "retry = {", "\x00\x01", "[retry]\nmax_attempts = 'many'\n"]:
        bad.write_text(text, errors="surrogateescape")
        result = CliRunner().invoke(cli, ["settings", "import", str(bad)])
        assert result.exit_code == 2 and "error:" in result.output, result.output
        assert stored_data(db) == before
        tally["refused"] += 1
    store.close()
    assert tally["refused"] > 0
    fig.tries = tally["imported"] + tally["refused"]
    fig.result = f"{tally['refused']} documents refused whole (every problem listed), {tally['imported']} imported whole"


@given(value=st.text(max_size=80) | st.binary(max_size=80) | WILD_TEXT, now=st.floats(-1e12, 1e12))
@settings(max_examples=EXAMPLES * 4, deadline=None)
def test_retry_after_never_raises_never_negative(value: str | bytes, now: float) -> None:
    seconds = parse_retry_after(value, now=now)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


def test_retry_after_from_a_real_server_keeps_waits_bounded(figures: Callable[[str], Figures]) -> None:
    fig = figures("input-retry-after")
    script = Script()
    headers = st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40
    ) | st.sampled_from(
        ["999999999999", "-5", "1e3", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
         "Mon, 01 Jan 1900 00:00:00 GMT", "3.5", "   7  ", "0", "Thu, 01 Jan 1970 00:00:00"]
    )  # fmt: skip
    tries = [0]
    with serve(script) as url:

        @given(header=headers)
        @settings(max_examples=soak_size(60, 600), deadline=None)
        def check(header: str) -> None:
            tries[0] += 1
            script.plan("/busy", Reply(503, b"busy", {"Retry-After": header}), Reply(200, b"ok"))
            clock = FakeClock()
            transport = RecoveringTransport(
                clock=clock, attempts=3, deadline=60, max_retry_after=30, breakers=False
            )
            with httpx.Client(transport=transport, timeout=2) as client:
                response = client.get(f"{url}/busy")
            # Either it waited (never negative, never past the cap) and got the answer, or it gave the 503
            # back at once because the server asked for more than the deadline allows.
            assert all(0 <= s <= 30 for s in clock.sleeps), (header, clock.sleeps)
            assert response.status_code in (200, 503)
            if response.status_code == 503:
                assert clock.sleeps == []

        check()
    fig.tries = tries[0] + EXAMPLES * 4
    fig.result = "parser never raised nor went negative; through HTTP every wait within [0, max_retry_after]"


# -- the command line -----------------------------------------------------------------------------------

_WORDS = [
    "settings", "list", "get", "set", "reset", "history", "undo", "export", "import", "tickets", "show",
    "resolve", "outcome", "prune", "status", "timeline", "breaker", "open", "close", "disable", "cancel",
    "simulate", "--json", "--home", "--timeout", "--operation", "-o", "--choice", "--attempts", "--deadline",
    "--by", "--note", "--value", "--format", "--limit", "--since", "--replace", "--help", "-h", "--yes",
    "retry.max_attempts", "retry.initial_delay", "breaker.failure_rate", "manual.mode", "notify.command",
    "3", "-1", "0", "off", "nan", "1e400", "250ms", "toml", "json", "yaml", "abcd1234", "retry", "skip",
    "abort", "", " ", "--", "=", "x" * 300, "\x1b[2J", "ünïcödé", "1;rm -rf /",
]  # fmt: skip
_KEY = st.sampled_from(sorted(SCHEMA)) | st.sampled_from(_WORDS)
_VALUE_TEXT = (
    st.sampled_from(sorted(SCHEMA)).flatmap(lambda k: values(SCHEMA[k]).map(SCHEMA[k].to_text)) | WILD_TEXT
)
_OP = st.sampled_from([[], ["--operation", "fetch"], ["-o", ""], ["--operation", "x" * 300]])
ARGV = (
    st.lists(st.sampled_from(_WORDS) | st.text(max_size=12), min_size=0, max_size=7)
    | st.tuples(st.just(["settings", "set"]), _KEY, _VALUE_TEXT, _OP).map(
        lambda t: [*t[0], t[1], t[2], *t[3]]
    )
    | st.tuples(st.sampled_from(["get", "reset"]), _KEY, _OP).map(lambda t: ["settings", t[0], t[1], *t[2]])
    | st.sampled_from(
        [["settings", "list", "--json"], ["status", "--json"], ["tickets", "list"], ["timeline"]]
    )
    | st.tuples(st.sampled_from(["undo", "history"]), st.integers(-3, 10).map(str)).map(
        lambda t: ["settings", *t]
    )
)


def test_random_cli_arguments_exit_cleanly_and_refusals_change_nothing(
    db: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("input-cli-argv")
    with SqliteSettings(db) as store:
        store.set("retry.max_attempts", 4)
    runner = CliRunner()
    exits: dict[int, int] = {}

    @given(argv=ARGV)
    @settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=FIXTURE_OK)
    def check(argv: list[str]) -> None:
        before = stored_data(db)
        result = runner.invoke(cli, argv, catch_exceptions=True)
        exits[result.exit_code] = exits.get(result.exit_code, 0) + 1
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"bounceback {argv!r} crashed: {result.exception!r}\n{result.output}")
        assert result.exit_code in (0, 1, 2), (argv, result.exit_code, result.output)
        assert "Traceback" not in result.output
        if result.exit_code != 0:
            assert stored_data(db) == before, f"refused {argv!r} but the database changed"

    check()
    # A few through the real console script, as a user types them.
    real = [
        ["settings", "set", "retry.max_attempts", "-3"],
        ["settings", "set", "no.such.key", "1"],
        ["settings", "undo", "999999"],
        ["tickets", "resolve", "nope", "--choice", "retry"],
        ["run", "--attempts", "0", "--", "true"],
        ["breaker", "open"],
    ]
    before = stored_data(db)
    for argv in real:
        proc = subprocess.run(
            [sys.executable, "-m", "bounceback", "--home", str(db.parent), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
        assert proc.returncode == 2, (argv, proc.returncode, proc.stderr)
        assert "Traceback" not in proc.stderr and (
            "error" in proc.stderr.lower() or "usage" in proc.stderr.lower()
        )
        assert stored_data(db) == before
    fig.tries = sum(exits.values()) + len(real)
    fig.result = (
        f"exit codes {dict(sorted(exits.items()))} (0 ok, 2 refused) with no traceback; refusals left the "
        f"database unchanged; {len(real)} real processes refused with exit 2"
    )


# -- ticket resolution requests ----------------------------------------------------------------------------

_ids = itertools.count()


def _park(tickets: SqliteTickets, *, skip: bool) -> str:
    info = GiveUp(
        "meter",
        ConnectionRefusedError(111, "refused meter:502"),
        "attempts",
        (),
        None,
        f"r{next(_ids)}",
        3.0,
        None,
    )
    ticket = tickets.park(open_ticket(info, now=1_800_000_000.0, can_skip=skip))
    return ticket.id


def test_ticket_resolution_requests(db: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("input-ticket-resolution")
    tickets = SqliteTickets(db)
    open_id = _park(tickets, skip=True)
    done_id = _park(tickets, skip=False)
    tickets.decide(done_id, "abort", by="ann")
    tally = {"refused": 0, "resolved": 0}
    steps = st.lists(st.integers(-3, 12) | WILD_TEXT, max_size=3)
    answer = st.fixed_dictionaries(
        {},
        optional={
            "attempts": st.integers(-5, 10**12) | st.floats() | WILD_TEXT | st.booleans(),
            "deadline": st.floats() | st.integers(-5, 10**12) | WILD_TEXT,
            "note": WILD_TEXT,
            "did": steps,
            "not_useful": steps,
        },
    )

    @given(
        target=st.sampled_from(["open", "done", "unknown"]),
        choice=st.sampled_from(["retry", "retry-adjusted", "skip", "abort", "RETRY", " skip "]) | WILD_TEXT,
        by=WILD_TEXT,
        extra=answer,
    )
    @settings(max_examples=EXAMPLES * 2, deadline=None, suppress_health_check=FIXTURE_OK)
    def check(target: str, choice: str, by: str, extra: dict[str, Any]) -> None:
        ticket_id = {"open": open_id, "done": done_id, "unknown": "deadbeef"}[target]
        before = stored_data(db)
        try:
            resolved = tickets.decide(ticket_id, choice, by=by, **extra)
        except ConfigError as exc:
            _clear(exc)
            tally["refused"] += 1
            assert stored_data(db) == before
            return
        except (TypeError, ValueError) as exc:
            raise AssertionError(f"unclear refusal for {choice!r} {extra!r}: {exc!r}") from exc
        # Only the open ticket can be resolved, once; park a fresh one for the next example.
        assert target == "open" and resolved.status == "resolved"
        tally["resolved"] += 1
        with pytest.raises(ConfigError, match="already"):
            tickets.decide(ticket_id, "abort", by="late")
        replace_open(_park(tickets, skip=True))

    def replace_open(new_id: str) -> None:
        nonlocal open_id
        open_id = new_id

    check()
    assert consistency_problems(db) == []
    # And through the CLI, as people type it.
    runner = CliRunner()
    for argv in (
        ["tickets", "resolve", open_id, "--choice", "retry-adjusted", "--attempts", "-2"],
        ["tickets", "resolve", open_id, "--choice", "fly"],
        ["tickets", "resolve", done_id, "--choice", "abort"],
        ["tickets", "resolve", "\x1b[2J", "--choice", "abort"],
    ):
        before = stored_data(db)
        result = runner.invoke(cli, argv)
        assert result.exit_code == 2 and "Traceback" not in result.output, (argv, result.output)
        assert stored_data(db) == before
        tally["refused"] += 1
    tickets.close()
    assert tally["refused"] > 0 and tally["resolved"] > 0
    fig.tries = tally["refused"] + tally["resolved"]
    fig.result = (
        f"{tally['refused']} bad requests refused with a clear error and the ticket unchanged; "
        f"{tally['resolved']} valid ones resolved exactly once (a second answer refused)"
    )


_ = StoreError  # named in the docstring's promise: a store failure is a clear error too
