"""Helpers for the end-to-end tests of `bounceback run`, `status`, `timeline`, `breaker` and `cancel`.

Every command runs as a real process (``python -m bounceback``) against the test's own home database;
the commands it runs are ``tests/flaky_command.py``, which fails a set number of times.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bounceback.stores import SqliteSettings

FLAKY = str(Path(__file__).resolve().parents[1] / "flaky_command.py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def bb(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``bounceback ARGS`` to the end, capturing stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "bounceback", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def bb_start(*args: str) -> subprocess.Popen[str]:
    """Start ``bounceback ARGS`` in the background with piped output."""
    return subprocess.Popen(
        [sys.executable, "-m", "bounceback", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def flaky(counter: Path, failures: int, *extra: str) -> list[str]:
    """The argv of a command that fails ``failures`` times (see tests/flaky_command.py)."""
    return [sys.executable, FLAKY, str(counter), str(failures), *extra]


def count(counter: Path) -> int:
    """How many times the flaky command ran."""
    return int(counter.read_text()) if counter.exists() else 0


def configure(home: Path, values: dict[str, Any], operation: str | None = None) -> None:
    """Store settings in the test's home database (the real store the CLI reads)."""
    with SqliteSettings(home / "bounceback.db") as settings:
        for key, value in values.items():
            settings.set(key, value, operation=operation)


def wait_for(predicate: Callable[[], Any], seconds: float = 15.0, step: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true, at most ``seconds``; returns its last value."""
    deadline = time.monotonic() + seconds
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(step)
        value = predicate()
    return value


def plain(text: str) -> str:
    """``text`` without ANSI escape sequences."""
    return ANSI.sub("", text)


class PtyProcess:
    """``bounceback ARGS`` on a pseudo-terminal (stdin, stdout and stderr), read by :meth:`pump`.

    With ``controlling``, the pty is the process's controlling terminal (a session of its own), as in a
    real terminal window: bytes written to :attr:`master` are typed keys (``\\x03`` is Ctrl-C).
    """

    def __init__(self, args: Sequence[str], columns: int = 200, *, controlling: bool = False) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        self.master = master

        def take_terminal() -> None:
            # As a login shell's terminal: a session of its own whose controlling terminal is the pty, so
            # job control works (foreground group, Ctrl-C typed at the keyboard goes to that group).
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bounceback", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            preexec_fn=take_terminal if controlling else None,  # noqa: PLW1509
        )
        os.close(slave)
        self.data = b""

    def pump(self, seconds: float = 0.05) -> None:
        """Read what arrived within ``seconds``."""
        ready, _, _ = select.select([self.master], [], [], seconds)
        if ready:
            try:
                self.data += os.read(self.master, 65536)
            except OSError:  # the other side closed: the process ended
                pass

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def wait(self, seconds: float = 30.0) -> int:
        """Read until the process exits; returns its exit code."""
        deadline = time.monotonic() + seconds
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump()
        self.pump(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
