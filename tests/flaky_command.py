"""A command that fails a set number of times, for the subprocess and CLI tests.

    python flaky_command.py COUNTER FAILURES [--code N | --signal NAME | --hang] [--out TEXT] [--err TEXT]
        [--child-pid FILE] [--then-code N] [--hang-on N] [--ignore-sigint] [--ignore-signals]

Each run adds one to the number in the file COUNTER. While that number is at most FAILURES the run fails
(exit code ``--code``, default 75; or kills itself with ``--signal``; or hangs with ``--hang``, after
writing the pid of a grandchild it started to ``--child-pid``). After that it prints ``--out`` on stdout
and ``--err`` on stderr and exits with ``--then-code`` (default 0). ``--hang-on N`` makes the Nth run hang whatever FAILURES
says; ``--ignore-sigint`` makes a run ignore Ctrl-C, ``--ignore-signals`` SIGINT, SIGTERM and SIGHUP (only
SIGKILL stops it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _write(path: Path, text: str) -> None:
    # Atomically: the test polls these files, and a plain write_text lets it read one empty mid-write.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("counter", type=Path)
    parser.add_argument("failures", type=int)
    parser.add_argument("--code", type=int, default=75)
    parser.add_argument("--signal", default=None)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--child-pid", type=Path, default=None)
    parser.add_argument("--out", default="")
    parser.add_argument("--err", default="")
    parser.add_argument("--fail-out", default="")
    parser.add_argument("--then-code", type=int, default=0)
    parser.add_argument("--hang-on", type=int, default=0)
    parser.add_argument("--ignore-sigint", action="store_true")
    parser.add_argument("--ignore-signals", action="store_true")
    args = parser.parse_args()
    if args.ignore_sigint or args.ignore_signals:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.ignore_signals:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    count = int(args.counter.read_text() or 0) + 1 if args.counter.exists() else 1
    _write(args.counter, str(count))
    if count == args.hang_on:
        args.hang = True
    if count <= args.failures or count == args.hang_on:
        if args.fail_out:
            print(args.fail_out, flush=True)
        if args.signal:
            os.kill(os.getpid(), getattr(signal, args.signal))
            time.sleep(5)
        if args.hang:
            if args.child_pid is not None:
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                _write(args.child_pid, str(child.pid))
            time.sleep(60)
        return args.code
    if args.out:
        sys.stdout.write(args.out)
        sys.stdout.flush()
    if args.err:
        sys.stderr.write(args.err)
        sys.stderr.flush()
    return args.then_code


if __name__ == "__main__":
    sys.exit(main())
