"""The give-up note is written when the notes are first read, and every reader sees it in its place."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
import traceback

import pytest

from bounceback import Policy
from bounceback.testing import FakeClock


def down() -> None:
    raise ConnectionResetError("down")


def given_up(attempts: int = 2) -> ConnectionResetError:
    policy = Policy("dep", attempts=attempts, clock=FakeClock(), budget=None)
    with pytest.raises(ConnectionResetError) as info:
        policy.call(down)
    return info.value


def test_no_text_is_built_until_the_notes_are_read() -> None:
    exc = given_up()
    assert list.__len__(exc.__dict__["__notes__"]) == 0  # nothing written yet
    assert len(exc.__notes__) == 1
    assert exc.__notes__[0].startswith("bounceback: dep: gave up after 2 attempt(s)")
    assert "  attempt 2: ConnectionResetError (transient" in exc.__notes__[0]


def test_traceback_printing_shows_the_note() -> None:
    text = "".join(traceback.format_exception(given_up()))
    assert "bounceback: dep: gave up after 2 attempt(s)" in text
    assert "attempt 1: ConnectionResetError" in text


def test_the_interpreter_prints_the_note_of_an_uncaught_error() -> None:
    script = textwrap.dedent(
        """
        from bounceback import Policy
        from bounceback.testing import FakeClock

        def down():
            raise ConnectionResetError("down")

        Policy("dep", attempts=2, clock=FakeClock(), budget=None).call(down)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-3].startswith("bounceback: dep: gave up after 2 attempt(s)")
    assert "attempt 2: ConnectionResetError" in done.stderr.splitlines()[-1]


def test_notes_added_later_come_after_it_and_notes_added_before_stay_before() -> None:
    policy = Policy("dep", attempts=1, clock=FakeClock(), budget=None)

    def noted() -> None:
        exc = ConnectionResetError("down")
        exc.add_note("from the dependency")
        raise exc

    with pytest.raises(ConnectionResetError) as info:
        policy.call(noted)
    info.value.add_note("from the caller")  # a C append that bypasses the list's methods
    notes = info.value.__notes__
    assert notes[0] == "from the dependency"
    assert notes[1].startswith("bounceback: dep: gave up after 1 attempt(s)")
    assert notes[2] == "from the caller"
    assert len(notes) == 3 and list(notes) == [notes[0], notes[1], notes[2]]


def test_nested_policies_note_inner_first() -> None:
    inner = Policy("inner", attempts=1, clock=FakeClock(), budget=None)
    outer = Policy("outer", attempts=1, clock=FakeClock(), budget=None)
    with pytest.raises(ConnectionResetError) as info:
        outer.call(inner.call, down)
    notes = list(info.value.__notes__)
    assert [n.split(":")[1].strip() for n in notes] == ["inner", "outer"]


def test_copies_and_pickles_hold_plain_written_notes() -> None:
    exc = given_up()
    again = pickle.loads(pickle.dumps(exc))
    assert type(again.__notes__) is list and again.__notes__ == list(exc.__notes__)
    exc2 = given_up()
    assert copy.copy(exc2.__notes__) == [exc2.__notes__[0]]
    assert type(copy.deepcopy(exc2.__notes__)) is list
    exc3 = given_up()
    assert exc3.__notes__ == [exc3.__notes__[0]] and "gave up" in repr(exc3.__notes__)
    exc4 = given_up()
    exc4.__notes__.append("x")  # a Python-level append writes the note first
    assert exc4.__notes__[-1] == "x" and len(exc4.__notes__) == 2
    exc5 = given_up()
    assert any("gave up" in n for n in exc5.__notes__)
    exc6 = given_up()
    assert exc6.__notes__[-1:] == [exc6.__notes__[0]] and exc6.__notes__.count(exc6.__notes__[0]) == 1
