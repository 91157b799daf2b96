"""Persistence adapters: the bounceback home database (SQLite) and the stores built on it.

>>> import tempfile, pathlib
>>> from bounceback.stores import SqliteSettings
>>> with SqliteSettings(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db") as settings:
...     _ = settings.set("retry.max_attempts", 3, operation="fetch")
...     settings.effective("fetch")["retry.max_attempts"]
3
"""

from bounceback.stores._home import (
    DATABASE_NAME,
    HOME_ENV,
    connect,
    database_path,
    home_dir,
    migrate,
    open_home,
    register_migrations,
    registered_migrations,
    schema_versions,
    transaction,
    translate_errors,
)
from bounceback.stores._shared import breaker_store_from_settings, budget_ledger_from_settings, store_options
from bounceback.stores._shared_limits import (
    RedisSharedLimits,
    SqliteSharedLimits,
    shared_limits_from_settings,
)
from bounceback.stores.journal._journal import Journal, is_process_alive
from bounceback.stores.journal._schema import (
    AttemptEntry,
    BreakerChange,
    CancelRequest,
    OperationCounts,
    RunEntry,
)
from bounceback.stores.journal._writer import JournalWriter
from bounceback.stores.redis._budget import RedisBudgetLedger
from bounceback.stores.redis._store import RedisBreakerStore, redis_client
from bounceback.stores.settings._rows import Change
from bounceback.stores.settings._store import SqliteSettings
from bounceback.stores.sqlite._breaker import SqliteBreakerStore
from bounceback.stores.sqlite._budget import SqliteBudgetLedger

__all__ = [
    "AttemptEntry",
    "BreakerChange",
    "CancelRequest",
    "Change",
    "DATABASE_NAME",
    "HOME_ENV",
    "Journal",
    "JournalWriter",
    "OperationCounts",
    "RedisBreakerStore",
    "RedisBudgetLedger",
    "RedisSharedLimits",
    "RunEntry",
    "SqliteBreakerStore",
    "SqliteBudgetLedger",
    "SqliteSettings",
    "SqliteSharedLimits",
    "breaker_store_from_settings",
    "budget_ledger_from_settings",
    "connect",
    "database_path",
    "home_dir",
    "is_process_alive",
    "migrate",
    "open_home",
    "redis_client",
    "register_migrations",
    "registered_migrations",
    "schema_versions",
    "shared_limits_from_settings",
    "store_options",
    "transaction",
    "translate_errors",
]
