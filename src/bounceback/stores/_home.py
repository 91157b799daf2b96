"""The bounceback home: where it is, its SQLite database, connections, and numbered migrations.

The home is ``$BOUNCEBACK_HOME`` if set, else the platform's user data directory (``$XDG_DATA_HOME/bounceback``
or ``~/.local/share/bounceback`` on Linux, ``~/Library/Application Support/bounceback`` on macOS,
``%LOCALAPPDATA%\\bounceback`` on Windows). It holds one database, ``bounceback.db``, shared by every part
of bounceback that persists something (settings, breaker state, journal, tickets).

Each part owns its tables and declares them once, at import, as a numbered list of SQL scripts::

    register_migrations("journal", [CREATE_ENTRIES, ADD_INDEX])

:func:`open_home` (or :func:`migrate` on a connection) applies what is missing, each script in its own
transaction, and records it in ``schema_migrations(component, version, applied_at)``. A database that
already has a higher version than this code knows was written by a newer bounceback and is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from bounceback.errors import ConfigError, StoreError

__all__ = [
    "DATABASE_NAME",
    "HOME_ENV",
    "connect",
    "database_path",
    "describe_lock_holders",
    "explain",
    "home_dir",
    "is_disk_full",
    "is_read_only_mount",
    "lock_holders",
    "migrate",
    "open_home",
    "register_migrations",
    "registered_migrations",
    "schema_versions",
    "store_name",
    "transaction",
    "translate_errors",
]

HOME_ENV = "BOUNCEBACK_HOME"
"""The environment variable that overrides the home directory."""

DATABASE_NAME = "bounceback.db"
"""The file name of the home database."""

_COMPONENT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_registry: dict[str, tuple[str, ...]] = {}
_registry_lock = threading.Lock()

_CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    applied_at REAL    NOT NULL,
    PRIMARY KEY (component, version)
)
"""


def home_dir(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """The bounceback home directory (not created here).

    >>> home_dir({"BOUNCEBACK_HOME": "/srv/bb"})
    PosixPath('/srv/bb')
    >>> home_dir({"XDG_DATA_HOME": "/data", "HOME": "/home/ann"}, platform="linux")
    PosixPath('/data/bounceback')
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser()
    user_home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if plat == "darwin":
        return user_home / "Library" / "Application Support" / "bounceback"
    if plat == "win32":
        base = env.get("LOCALAPPDATA") or env.get("APPDATA")
        return (Path(base) if base else user_home / "AppData" / "Local") / "bounceback"
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative path in XDG_DATA_HOME is invalid and must be ignored.
    base_dir = Path(xdg) if xdg and Path(xdg).is_absolute() else user_home / ".local" / "share"
    return base_dir / "bounceback"


def database_path(home: str | Path | None = None) -> Path:
    """The home database file: ``<home>/bounceback.db`` (``home`` defaults to :func:`home_dir`)."""
    return (Path(home).expanduser() if home is not None else home_dir()) / DATABASE_NAME


def store_name(path: str | Path) -> str:
    """How a database is named in errors and events: ``sqlite:/path/to/bounceback.db``."""
    return f"sqlite:{path}"


def is_read_only_mount(path: str | Path) -> bool:
    """True when ``path`` (or its nearest existing parent) is on a file system mounted read-only."""
    here = Path(path).absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        return bool(os.statvfs(here).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows) or the folder vanished
        return False


def is_disk_full(path: str | Path) -> bool:
    """True when the file system holding ``path`` (or its nearest existing parent) has no free block left
    for an ordinary user (SQLite then often reports "disk I/O error" rather than "database or disk is
    full", depending on which write found the disk full)."""
    here = Path(path).absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        stat = os.statvfs(here)
    except (OSError, AttributeError):
        return False
    return stat.f_bavail == 0 or (stat.f_favail == 0 and stat.f_files > 0)


def lock_holders(path: str | Path) -> list[int]:
    """The other processes holding a write lock on the database ``path`` (Linux: from ``/proc/locks``).

    In WAL mode the writer locks bytes of ``-shm`` (120 the write lock, 121 a checkpoint, 122+ recovery);
    a rollback-mode writer locks the database file itself. Empty where ``/proc/locks`` is not available.
    """
    path = Path(path)
    targets: dict[tuple[int, int, int], str] = {}
    for file, kind in ((path, "db"), (path.with_name(path.name + "-shm"), "shm")):
        try:
            st = os.stat(file)
        except OSError:
            continue
        targets[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = kind
    if not targets:
        return []
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    found: list[int] = []
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a request waiting for a lock, not a lock held
            continue
        try:
            _n, _type, _mode, access, pid_text, where, start = parts[:7]
            major, minor, inode = where.split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid, first = int(pid_text), int(start)
        except ValueError:
            continue
        what = targets.get(key)
        if access != "WRITE" or what is None or pid in (0, os.getpid()) or pid in found:
            continue
        if what == "db" or 120 <= first < 128:
            found.append(pid)
    return found


def describe_lock_holders(path: str | Path) -> str:
    """`` (held by pid 4242: python worker.py, stopped ...)`` for an error message; empty when unknown."""
    described = []
    for pid in lock_holders(path)[:3]:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(errors="replace")
            state = stat[stat.rindex(")") + 2 :].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        text = f"pid {pid}: {command.strip()[:80] or '?'}"
        if state in ("T", "t"):
            text += f", stopped by a signal (resume it with kill -CONT {pid}, or end it)"
        described.append(text)
    return f" (held by {'; '.join(described)})" if described else ""


def explain(exc: BaseException, path: str | Path | None = None) -> str:
    """What a SQLite error means for a person, and what to do about it.

    With the database ``path``, an error caused by the file system (mounted read-only, or full) is named
    as such, whatever SQLite's own words for it were.
    """
    text = str(exc)
    low = text.lower()
    fs_error = any(word in low for word in ("readonly", "unable to open", "i/o error", "full"))
    if path is not None and fs_error and is_read_only_mount(Path(path).parent):
        return (
            f"{text}: the folder {str(Path(path).parent)!r} is on a file system mounted read-only; "
            f"stored values can be read but nothing can be written; remount it read-write, or point "
            f"--home / {HOME_ENV} at a writable folder"
        )
    if path is not None and fs_error and is_disk_full(Path(path).parent):
        return (
            f"{text}: the disk is full (no free space left on the file system of {str(Path(path).parent)!r}); "
            "free some space, then try again; nothing was written"
        )
    if "locked" in low or "busy" in low:
        holders = describe_lock_holders(path) if path is not None else ""
        return (
            f"{text}: another process held the database lock longer than the busy timeout"
            f"{holders}; try again, or stop the process that keeps it locked"
        )
    if "readonly" in low or "read-only" in low:
        return (
            f"{text}: the database file or its folder is read-only; fix the permissions, or point "
            f"--home / {HOME_ENV} at a writable folder"
        )
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return (
            f"{text}: the file is corrupt or not a bounceback database; move it aside (a new one is "
            "created on the next start) or restore a backup"
        )
    if "unable to open" in low or isinstance(exc, OSError):
        return f"{text}: the file cannot be opened; check that its folder exists and is writable"
    if "full" in low:
        return f"{text}: the disk is full; free some space"
    return text


@contextmanager
def translate_errors(path: str | Path, action: str) -> Iterator[None]:
    """Turn ``sqlite3.Error`` and ``OSError`` inside the block into a StoreError that says what to do."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(store_name(path), action, explain(exc, path)) from exc


def connect(path: str | Path, *, timeout: float = 5.0, create: bool = True) -> sqlite3.Connection:
    """Open a connection in autocommit mode, with WAL, a busy timeout and foreign keys on.

    Transactions are explicit (see :func:`transaction`). The connection may be used from several threads
    if the caller serialises its use. With ``create=False`` a missing file is a StoreError.
    """
    path = Path(path)
    with translate_errors(path, "open the database"):
        if create:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = str(path)
        else:
            target = f"{path.absolute().as_uri()}?mode=rw"
        beside = [p for p in _companions(path) if not p.exists()]  # files this open may create
        conn = sqlite3.connect(
            target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=not create
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            _use_wal(conn, timeout)
            # Reading the schema reads the file header: a corrupt file fails here, not on first use.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            _remove_stubs(beside)
            if not (create and _cannot_write_beside(exc, path) and path.is_file()):
                raise
            try:
                conn = _open_immutable(path, timeout)
            except sqlite3.Error:
                raise exc from None  # the first error says more than the fallback's

        except BaseException:
            conn.close()
            raise
    return conn


def _cannot_write_beside(exc: sqlite3.Error, path: Path) -> bool:
    """True for the errors of a database whose folder cannot take its ``-shm`` / ``-wal`` files.

    A folder without write permission gives "readonly"; a read-only mount gives "unable to open database
    file" (SQLite cannot create ``-shm`` there, so it cannot even read); a full disk gives "disk I/O error"
    (``-shm`` cannot be grown). Reading without them (immutable) is only right while the ``-wal`` holds
    nothing: an immutable connection does not read the WAL, so its last commits would be missing.
    """
    text = str(exc).lower()
    cause = "readonly" in text or "unable to open" in text
    if not cause and ("i/o error" in text or "full" in text):
        cause = is_disk_full(path.parent)
    wal = path.with_name(path.name + "-wal")
    return cause and (not wal.exists() or wal.stat().st_size == 0)


def _companions(path: Path) -> list[Path]:
    return [path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _remove_stubs(created: list[Path]) -> None:
    """Remove the ``-shm`` / ``-wal`` stubs a failed open left (a full disk leaves a 3-byte ``-shm``).

    Only files this open created, and only while no other connection uses the database: SQLite's users
    hold a shared POSIX lock on the "dead man switch" byte (offset 128) of ``-shm``; if nobody does, the
    stubs belong to nobody and would only confuse a person looking at the folder.
    """
    if sys.platform != "linux":  # the struct flock layout below is Linux's; elsewhere leave the files
        return
    import fcntl

    shm = next((p for p in created if p.name.endswith("-shm")), None)
    if shm is not None and shm.exists():
        try:
            with open(shm, "rb+") as handle:
                probe = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 128, 1, 0)
                held = struct.unpack("hhqqi", fcntl.fcntl(handle, fcntl.F_GETLK, probe))[0]
            if held != fcntl.F_UNLCK:
                return  # another process opened the database meanwhile: its files, not stubs
            shm.unlink()
        except OSError:
            return
    for stub in created:
        with contextlib.suppress(OSError):
            if stub.exists() and stub.stat().st_size == 0:
                stub.unlink()


def _open_immutable(path: Path, timeout: float) -> sqlite3.Connection:
    """Read a WAL database whose folder we may not write (a read-only home).

    SQLite cannot create the ``-shm`` file there, so even reading fails. Opened as immutable (no locks,
    no ``-shm``), the stored settings and state can still be read; every write fails with SQLite's
    "readonly" error, which :func:`explain` turns into "fix the permissions". Nothing can be written
    through this connection anyway; changes others make to the file meanwhile are not seen.
    """
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro&immutable=1",
        timeout=timeout,
        isolation_level=None,
        check_same_thread=False,
        uri=True,
    )
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            # A read-only database can still be read in its current mode; writes will fail clearly later.
            if "readonly" in text:
                return
            # Several processes switching a new file to WAL at once: SQLite refuses all but one at once
            # (no busy handler, it would deadlock), so wait for the winner as a busy timeout would.
            if "locked" not in text or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
    if str(mode).lower() == "wal":
        # WAL makes NORMAL durable enough (a power cut may lose the last commit, never corrupt).
        conn.execute("PRAGMA synchronous = NORMAL")


@contextmanager
def transaction(conn: sqlite3.Connection, path: str | Path, action: str) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error; SQLite errors become StoreError.

    IMMEDIATE takes the write lock at the start, so a read-modify-write inside cannot lose an update to
    another process.
    """
    with translate_errors(path, action):
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def register_migrations(component: str, scripts: Sequence[str]) -> None:
    """Declare the schema scripts of ``component``; script ``i`` (from 0) is version ``i + 1``.

    Call it once at import of the module that owns the tables. Released scripts never change: a later
    call may only append scripts (a repeated identical call is harmless)::

        register_migrations("journal", [
            "CREATE TABLE journal_entries (id INTEGER PRIMARY KEY, at REAL NOT NULL, text TEXT NOT NULL)",
            "CREATE INDEX journal_entries_at ON journal_entries (at)",   # version 2, added later
        ])
    """
    if not _COMPONENT.match(component):
        raise ConfigError("component", component, "a lower-case name such as 'journal' (a-z, 0-9, _)")
    new = tuple(scripts)
    if not new or not all(isinstance(s, str) and s.strip() for s in new):
        raise ConfigError("scripts", scripts, "a non-empty list of SQL scripts")
    with _registry_lock:
        old = _registry.get(component, ())
        if new[: len(old)] != old:
            raise ConfigError(
                "scripts",
                component,
                f"the {len(old)} script(s) already registered, unchanged, followed by new ones",
                hint="a released migration must never change; add a new script instead",
            )
        _registry[component] = new


def registered_migrations() -> dict[str, tuple[str, ...]]:
    """Every registered component with its scripts."""
    with _registry_lock:
        return dict(_registry)


def schema_versions(conn: sqlite3.Connection) -> dict[str, int]:
    """The applied version of every component recorded in the database (empty for a new database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return {}
    rows = conn.execute("SELECT component, max(version) FROM schema_migrations GROUP BY component")
    return {str(component): int(version) for component, version in rows}


def migrate(
    conn: sqlite3.Connection, path: str | Path, components: Iterable[str] | None = None
) -> dict[str, int]:
    """Apply the missing migrations of ``components`` (default: all registered); return their versions.

    Each script runs in its own ``BEGIN IMMEDIATE`` transaction together with its row in
    ``schema_migrations``, so a failed script leaves nothing behind and two processes opening a new
    database at once apply each script exactly once. Raises StoreError when the database is newer.
    """
    known = registered_migrations()
    names = sorted(known if components is None else components)
    with translate_errors(path, "read the schema versions"):
        versions = schema_versions(conn)
    for name in names:
        if name not in known:
            raise ConfigError("component", name, "a component registered with register_migrations")
        _check_not_newer(path, name, versions.get(name, 0), len(known[name]))
    pending = [n for n in names if versions.get(n, 0) < len(known[n])]
    if not pending:
        # Nothing to write: a read-only database that is up to date opens fine.
        return {n: versions.get(n, 0) for n in names}
    with transaction(conn, path, "create the schema_migrations table"):
        conn.execute(_CREATE_MIGRATIONS)
    for name in pending:
        for version, script in enumerate(known[name], start=1):
            with transaction(conn, path, f"apply migration {name} {version}"):
                current = schema_versions(conn).get(name, 0)
                _check_not_newer(path, name, current, len(known[name]))
                if current >= version:
                    continue  # applied by another process meanwhile
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                    (name, version, time.time()),
                )
        versions[name] = len(known[name])
    return {n: versions.get(n, 0) for n in names}


def _check_not_newer(path: str | Path, component: str, found: int, known: int) -> None:
    if found > known:
        raise StoreError(
            store_name(path),
            f"use the {component} tables",
            f"the database was written by a newer bounceback ({component} schema version {found}; this "
            f"version knows up to {known}); upgrade bounceback, or point --home / {HOME_ENV} elsewhere",
        )


def _statements(script: str) -> Iterator[str]:
    # executescript() would COMMIT the surrounding transaction first, so split the script into complete
    # statements instead (complete_statement understands quotes, comments and trigger bodies).
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.strip(";").strip():
                yield statement
    rest = buffer[:-1].strip()
    if rest:
        yield rest  # incomplete: let SQLite report the syntax error


def open_home(path: str | Path | None = None, *, timeout: float = 5.0) -> sqlite3.Connection:
    """Open the home database (default: :func:`database_path`) and apply every registered migration.

    >>> import tempfile, pathlib
    >>> conn = open_home(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> conn.execute("PRAGMA journal_mode").fetchone()
    ('wal',)
    >>> conn.close()
    """
    target = Path(path) if path is not None else database_path()
    conn = connect(target, timeout=timeout)
    try:
        migrate(conn, target)
    except BaseException:
        conn.close()
        raise
    return conn
