"""The demo end to end: the real CLI in a subprocess, against the real fleet, on a fresh home database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _bounceback(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOUNCEBACK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "bounceback", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_demo_fast_recovers_what_it_can_and_parks_tickets(tmp_path: Path) -> None:
    started = time.monotonic()
    done = _bounceback(tmp_path, "demo", "--fast", "--json")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    by_fault = {d["fault"]: d for d in summary["devices"]}
    assert by_fault["healthy"]["outcome"] == "ok"
    assert by_fault["slow"]["outcome"] == "ok"
    assert by_fault["flapping"] == {**by_fault["flapping"], "outcome": "recovered", "attempts": 3}
    assert by_fault["throttling"]["outcome"] == "recovered"
    assert by_fault["outage"]["outcome"] == "recovered"
    assert by_fault["outage"]["attempts"] >= 4  # it waited for the breaker's probes
    assert by_fault["cut"]["outcome"] == "recovered"
    refusing, auth = by_fault["refusing"], by_fault["auth"]
    assert (refusing["outcome"], refusing["detail"]) == ("ticket", "connection-refused")
    assert (auth["outcome"], auth["detail"], auth["attempts"]) == ("ticket", "authentication", 1)
    assert "credentials" in auth["guidance"]
    # The industrial devices: a real Modbus TCP server and a real OPC UA server, classified by the packs.
    assert by_fault["modbus-busy"] == {**by_fault["modbus-busy"], "outcome": "recovered", "attempts": 3}
    assert by_fault["modbus-gateway"] == {**by_fault["modbus-gateway"], "outcome": "recovered", "attempts": 2}
    assert by_fault["opcua-link"]["outcome"] == "recovered"
    meter = by_fault["modbus-address"]
    assert (meter["outcome"], meter["detail"], meter["attempts"]) == ("ticket", "modbus-bad-address", 1)
    assert "Device 3 has no register 4000" in meter["guidance"]
    assert sorted(summary["tickets"]) == sorted([refusing["ticket"], auth["ticket"], meter["ticket"]])
    assert took < 60

    # Without a terminal the tickets are parked in the home database, for the CLI (and dashboard) to resolve.
    listed = json.loads(_bounceback(tmp_path, "tickets", "list", "--json").stdout)
    assert {t["id"] for t in listed} >= set(summary["tickets"])

    # The breaker of the device that was down opened, probed and closed; other processes see it.
    status = json.loads(_bounceback(tmp_path, "status", "--json").stdout)
    text = json.dumps(status)
    assert "device/boiler-05" in text
    assert "pull-config/mixer-03" in text
    assert "device/plc-09" in text and "pull-config/line-12" in text  # the industrial devices too


def test_demo_prints_a_summary_table_and_next_steps(tmp_path: Path) -> None:
    done = _bounceback(tmp_path, "demo", "--fast", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "pulled configuration from 12 devices" in done.stdout
    for device in ("press-01", "boiler-05", "valve-06", "sensor-07", "plc-09", "meter-11", "line-12"):
        assert device in done.stdout
    assert "bounceback tickets show" in done.stderr
    assert "\x1b[" not in done.stderr  # no terminal: plain text


def test_demo_serves_the_dashboard_beside_it(tmp_path: Path) -> None:
    done = _bounceback(tmp_path, "demo", "--fast", "--dashboard", "--json")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("dashboard: "))
    assert line.startswith("dashboard: http://127.0.0.1:")
    assert "token=" in line
    assert len(json.loads(done.stdout)["devices"]) == 12


def test_demo_at_a_terminal_asks_about_each_ticket(home: Path) -> None:
    import os

    from tests.cli.run_helpers import PtyProcess

    term = PtyProcess(["demo", "--fast"])
    try:
        answered = 0
        deadline = time.monotonic() + 60
        while answered < 3 and time.monotonic() < deadline:
            term.pump()
            if term.text().count("Choose 1-") > answered:
                os.write(term.master, b"3\n")  # abort, for the three tickets
                answered += 1
        assert answered == 3, term.text()[-2000:]
        assert term.wait(60) == 0
    finally:
        term.close()
    text = term.text()
    assert "What to check" in text  # the ticket, with its guidance, was shown
    assert "(abort)" in text  # and the summary records the person's decision
    assert "waiting for a person" not in text
