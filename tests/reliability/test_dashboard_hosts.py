"""``bounceback dashboard --host``: every loopback address works through the very URL printed, every other
address is refused unless ``--allow-remote``, and a foreign Host header is still refused (DNS rebinding).

Real ``bounceback dashboard`` processes, real HTTP on loopback addresses only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.reliability.conftest import ROOT, Figures

LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.42.7.9", "localhost", "::1", "[::1]", "0:0:0:0:0:0:0:1"]
NOT_LOOPBACK = ["0.0.0.0", "::", "10.0.0.1", "192.0.2.7", "169.254.1.1", "example.com", "127.0.0.1.nip.io"]


def _serve(home: Path, host: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bounceback", "--home", str(home), "dashboard", "--host", host, "--no-open"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BROWSER": "true"},
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    return err


def test_every_loopback_host_answers_its_own_url(home: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("dashboard-loopback-hosts")
    tries = 0
    for host in LOOPBACK:
        proc, url = _serve(home, host)
        try:
            assert url.startswith("http://"), (
                host,
                url,
                proc.stderr.read() if proc.poll() is not None else "",
            )
            with httpx.Client(timeout=10, follow_redirects=True) as client:
                page = client.get(url)
                assert page.status_code == 200, (host, url, page.status_code, page.text[:200])
                netloc = urlsplit(url).netloc
                api = client.get(url.replace("/?", "/api/snapshot?", 1))
                assert api.status_code in (200, 404), (host, api.status_code)
                # The same server asked under a foreign name (DNS rebinding): still refused.
                evil = client.get(url, headers={"Host": f"attacker.example:{netloc.rsplit(':', 1)[1]}"})
                assert evil.status_code == 421, (host, evil.status_code)
            tries += 3
        finally:
            err = _stop(proc)
        assert "warning: listening on" not in err, (host, err)
    for host in NOT_LOOPBACK:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bounceback",
                "--home",
                str(home),
                "dashboard",
                "--host",
                host,
                "--no-open",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2, (host, done.returncode, done.stderr[-500:])
        assert "loopback address" in done.stderr and "--allow-remote" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        tries += 1
    fig.tries = tries
    fig.result = (
        f"{len(LOOPBACK)} loopback spellings (127.0.0.1, 127.0.0.2, 127.42.7.9, localhost, ::1 in three forms): "
        "the printed URL answered 200, a foreign Host header 421; "
        f"{len(NOT_LOOPBACK)} other addresses and names refused without --allow-remote (exit 2, the fix named)"
    )
