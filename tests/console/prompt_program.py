"""A program whose operation fails three times, then hands the ticket to a person at the terminal.

Run by tests/console/test_prompt.py on a pseudo-terminal; the home database is $BOUNCEBACK_HOME.
"""

from __future__ import annotations

import sys

from bounceback import Policy
from bounceback.console import TerminalPrompter
from bounceback.core.policy._manual import ManualRecovery
from bounceback.stores._tickets import SqliteTickets
from bounceback.testing import FakeClock

MESSAGE = "[bold red]boom[/] <script>alert(1)</script> \x1b[2J\x1b]0;pwned\x07 Connect call failed ('10.0.0.7', 8080)"
calls: list[int] = []


def read_meter() -> str:
    calls.append(1)
    if len(calls) <= 3:
        raise ConnectionRefusedError(111, MESSAGE)
    return "42 kWh"


recovery = ManualRecovery(store=SqliteTickets(), prompter=TerminalPrompter(who="ann"))  # mode auto
policy = Policy("read-meter", attempts=3, clock=FakeClock(), fallback=recovery)
print(f"result: {policy.call(read_meter)} after {len(calls)} calls", flush=True)
sys.exit(0)
