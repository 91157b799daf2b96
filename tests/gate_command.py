"""A command that waits on a FIFO the test controls, for the tests that watch a run from its first attempt.

    python gate_command.py FIFO [--pid FILE] [--child-pid FILE]

Each run appends its process id to FILE (one line per run) and, with ``--child-pid``, starts a child of
its own (in its process group) and writes that child's pid to the file. Then it blocks reading FIFO until
the test writes a number and closes it, and exits with that number (nothing written: 0). No timer is
involved: the run lasts exactly until the test says how it ends (see :func:`release`).
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import time
from pathlib import Path


def release(fifo: Path, code: int, seconds: float = 15.0) -> None:
    """End the run that is waiting on ``fifo`` with exit code ``code`` (waits up to ``seconds`` for a reader)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            # ENXIO: no reader yet (the command is starting); try again shortly, within the bound.
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        try:
            os.write(fd, str(code).encode())
        finally:
            os.close(fd)
        return


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("fifo", type=Path)
    parser.add_argument("--pid", type=Path, default=None)
    parser.add_argument("--child-pid", type=Path, default=None)
    args = parser.parse_args()
    if args.pid is not None:
        with args.pid.open("a") as out:
            out.write(f"{os.getpid()}\n")
    if args.child_pid is not None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        args.child_pid.write_text(str(child.pid))
    with args.fifo.open() as gate:  # blocks until the test opens the FIFO for writing
        text = gate.read().strip()
    return int(text or 0)


if __name__ == "__main__":
    sys.exit(main())
