from __future__ import annotations

import errno
import io
import socket
import sqlite3
import urllib.error
from email.message import Message

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bounceback import (
    CircuitOpenError,
    Classification,
    Classifier,
    ConfigError,
    ErrorKind,
    on_errno,
    on_message,
    on_predicate,
    on_type,
)
from bounceback.classify import DEFAULT_CLASSIFIER, classify, mark

T, P, TH = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED


def _http_error(status: int, retry_after: str | None = None) -> urllib.error.HTTPError:
    headers = Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return urllib.error.HTTPError("http://127.0.0.1/x", status, "status", headers, io.BytesIO(b""))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), T),
        (ConnectionResetError(errno.ECONNRESET, "reset"), T),
        (ConnectionAbortedError(), T),
        (BrokenPipeError(), T),
        (TimeoutError(), T),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), T),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), P),
        (OSError(errno.EAGAIN, "again"), T),
        (OSError(errno.EBUSY, "busy"), T),
        (OSError(errno.ETIMEDOUT, "timed out"), T),
        (OSError(errno.EHOSTUNREACH, "no route"), T),
        (OSError(errno.ENOSPC, "disk full"), P),
        (sqlite3.OperationalError("database is locked"), T),
        (sqlite3.OperationalError("database table is locked"), T),
        (sqlite3.OperationalError("no such table: x"), P),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), P),
        (ValueError("bad"), P),
        (TypeError("bad"), P),
        (KeyError("k"), P),
        (PermissionError(errno.EACCES, "denied"), P),
        (FileNotFoundError(errno.ENOENT, "missing"), P),
        (NotImplementedError(), P),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), T),
    ],
)
def test_stdlib_defaults(exc: BaseException, kind: ErrorKind) -> None:
    verdict = classify(exc)
    assert verdict.kind is kind, verdict
    assert verdict.reason


@pytest.mark.parametrize(
    ("status", "kind"),
    [(408, T), (425, T), (429, TH), (500, T), (502, T), (503, TH), (504, T), (404, P), (401, P)],
)
def test_urllib_http_errors(status: int, kind: ErrorKind) -> None:
    assert classify(_http_error(status)).kind is kind


def test_throttled_http_error_carries_retry_after() -> None:
    assert classify(_http_error(429, "7")).retry_after == 7.0
    assert classify(_http_error(503, "junk")).retry_after is None


def test_unknown_errors_follow_the_configured_default() -> None:
    class DeviceBusy(Exception):
        pass

    assert classify(DeviceBusy()).kind is T
    assert "unclassified" in classify(DeviceBusy()).reason
    assert Classifier(unknown="permanent").classify(DeviceBusy()).kind is P


def test_user_rules_win_over_defaults_and_compose() -> None:
    c = DEFAULT_CLASSIFIER.with_rules(on_type(ValueError, kind="transient", reason="flaky parser"))
    assert c.classify(ValueError()).kind is T
    c2 = c.with_rules(on_message("quota", kind="throttled"))
    assert c2.classify(RuntimeError("Quota exceeded")).kind is TH
    assert c2.classify(ValueError()).kind is T  # the earlier rule still applies
    assert c2.classify(TypeError()).kind is P  # and the defaults behind them


def test_predicate_and_errno_rules() -> None:
    class ApiError(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    c = Classifier(
        [
            on_predicate(lambda e: getattr(e, "status", 0) == 409, kind="transient", reason="conflict"),
            on_errno(errno.ENOSPC, kind="transient"),
        ]
    )
    assert c.classify(ApiError(409)).reason == "conflict"
    assert c.classify(OSError(errno.ENOSPC, "full")).kind is T


def test_an_error_can_carry_its_own_classification() -> None:
    err = mark(RuntimeError("rebooting"), "throttled", retry_after=5)
    verdict = classify(err)
    assert (verdict.kind, verdict.retry_after) == (TH, 5.0)

    class Permanent(Exception):
        bounceback_kind = "permanent"

    assert classify(Permanent()).kind is P


def test_wrapped_errors_are_classified_by_their_cause() -> None:
    class LibraryError(Exception):
        pass

    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as inner:
            raise LibraryError("could not connect") from inner
    except LibraryError as outer:
        caught = outer
    assert Classifier(unknown="permanent").classify(caught).kind is T


def test_open_breaker_is_throttled_until_the_probe_and_forced_open_is_permanent() -> None:
    verdict = classify(CircuitOpenError("db", "open", 1000.0, 12.5))
    assert (verdict.kind, verdict.retry_after) == (TH, 12.5)
    assert classify(CircuitOpenError("db", "forced_open", None, None)).kind is P


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ConfigError, match="kind"):
        on_type(ValueError, kind="sometimes")
    with pytest.raises(ConfigError, match="pattern"):
        on_message("([", kind="transient")
    with pytest.raises(ConfigError, match="types"):
        on_type(kind="transient")


@given(st.text(max_size=200), st.integers(min_value=-5, max_value=200))
def test_classify_never_crashes(message: str, code: int) -> None:
    for exc in (RuntimeError(message), OSError(code, message), sqlite3.OperationalError(message)):
        assert classify(exc).kind in ErrorKind


def test_a_plain_function_is_a_classifier_and_each_answer_means_what_it_says() -> None:
    from bounceback import Policy
    from bounceback.testing import FakeClock

    answers: dict[str, object] = {
        "retry": True,
        "stop": False,
        "slow down": "throttled",
        "kind": ErrorKind.PERMANENT,
        "own": Classification(ErrorKind.TRANSIENT, "the device said busy"),
        "no opinion": None,
    }

    def mine(exc: BaseException) -> object:
        return answers[str(exc)]

    clock = FakeClock()
    policy = Policy("plc", attempts=3, classifier=mine, clock=clock, budget=None)  # type: ignore[arg-type]
    tries: dict[str, int] = {}
    for message in answers:
        calls: list[int] = []

        def fail(message: str = message, calls: list[int] = calls) -> None:
            calls.append(1)
            raise RuntimeError(message)

        with pytest.raises(RuntimeError):
            policy.call(fail)
        tries[message] = len(calls)
    # True, a throttled kind, its own transient verdict, and no opinion (the default: transient) retry.
    assert tries == {"retry": 3, "stop": 1, "slow down": 3, "kind": 1, "own": 3, "no opinion": 3}


def test_a_classifier_that_is_neither_a_classifier_nor_a_function_is_refused_at_once() -> None:
    from bounceback import Policy, retry

    with pytest.raises(ConfigError) as info:
        retry(classifier="transient")  # type: ignore[arg-type]
    assert info.value.field == "classifier" and "function of the exception" in str(info.value)
    with pytest.raises(ConfigError):
        Policy("x", classifier=ValueError)  # type: ignore[arg-type]


def test_a_function_that_answers_nonsense_gets_a_clear_error() -> None:
    from bounceback.core.classify._rules import as_classifier

    odd = as_classifier(lambda exc: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigError, match="to return a Classification"):
        odd.classify(RuntimeError("x"))


def test_retry_refuses_an_option_it_does_not_take_and_says_where_a_breaker_goes() -> None:
    from bounceback import retry

    with pytest.raises(ConfigError) as info:
        retry(breaker=object())  # type: ignore[call-arg]
    assert info.value.field == "breaker" and "Policy(" in (info.value.hint or "")
