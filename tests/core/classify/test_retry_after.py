from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from bounceback.classify import parse_retry_after


def test_delta_seconds_and_dates() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 42 ") == 42.0
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, tz=UTC), usegmt=True)
    assert parse_retry_after(date, now=now) == 30.0
    past = format_datetime(datetime.fromtimestamp(now - 30, tz=UTC), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after(b"5") == 5.0


def test_junk_is_none() -> None:
    for junk in [
        None,
        "",
        "-1",
        "1.5",
        "soon",
        "9" * 100,
        "Wed, 99 Foo 2015 07:28:00 GMT",
        "\x00",
        "Thu, 01 Jan 1970",
    ]:
        assert parse_retry_after(junk) is None, junk


@given(st.one_of(st.text(max_size=80), st.binary(max_size=80)))
def test_never_crashes_on_anything(value: str | bytes) -> None:
    result = parse_retry_after(value)
    assert result is None or result >= 0
