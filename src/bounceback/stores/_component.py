"""A reader or writer of one component's tables in the home database, with its own lazy connection.

The journal and the ticket store share this: the connection opens on first use (and the component's
migrations are applied then), is guarded by a lock, closes on :meth:`close` or at the end of a ``with``
block, and opens again on the next use.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from bounceback.stores._home import connect, database_path, migrate

__all__ = ["HomeComponent"]


class HomeComponent:
    """Base of the stores that keep one connection to the home database for their own ``component``."""

    component: str = ""
    """The migrations component whose tables this store uses (set by each subclass)."""

    def __init__(
        self, path: str | Path | None = None, *, home: str | Path | None = None, timeout: float = 5.0
    ) -> None:
        self.path = Path(path) if path is not None else database_path(home)
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection (it opens again on the next use)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        """The open connection, opening it (and applying this component's migrations) if needed."""
        if self._conn is None:
            conn = connect(self.path, timeout=self.timeout)
            try:
                migrate(conn, self.path, [self.component])
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn
