"""A throwaway PostgreSQL cluster (Debian's ``postgresql`` package) in a temporary folder on 127.0.0.1.

``initdb`` and the server refuse to run as root, so as root they run as the ``postgres`` user through
``runuser`` (the Debian package creates it). A missing binary fails the test with what to install: CI
installs it (scripts/test.sh), and a silent skip would hide that the PostgreSQL tests did not run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.integrations.packs_support import free_port

__all__ = ["PASSWORD", "PostgresServer", "postgres_server"]

PASSWORD = "plant-secret"


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if versions:
        return Path(versions[-1]).parent
    pytest.fail(
        "no PostgreSQL server binaries: install them (`apt-get install postgresql`) to run these tests",
        pytrace=False,
    )


class PostgresServer:
    """One cluster: superuser ``postgres`` with :data:`PASSWORD` over TCP (scram), database ``plant``."""

    def __init__(self, root: Path) -> None:
        self.bin = _bin_dir()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
            root.chmod(0o700)

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if self.as_user:
            shutil.chown(pwfile, "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c deadlock_timeout=50ms -c max_connections=20"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres password={PASSWORD} dbname=plant connect_timeout=3"

    def connect(self, **options: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: that is private to root, and the server runs as the postgres user.
    root = Path(tempfile.mkdtemp(prefix="bounceback-pg-"))
    server = PostgresServer(root)
    server.init()
    server.start()
    with psycopg.connect(server.dsn.replace("dbname=plant", "dbname=postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE plant")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
