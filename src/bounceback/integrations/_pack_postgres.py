"""What psycopg's errors mean: the error pack registered for the ``psycopg`` module (PostgreSQL).

By SQLSTATE, which PostgreSQL documents: a failed or lost connection (class 08, or no SQLSTATE at all), a
serialization failure (40001), a deadlock (40P01), a server shutting down or starting (57P01, 57P02, 57P03),
a lock not available (55P03), a cancelled statement (57014) and a read-only standby after a fail-over
(25006) are transient; too many connections (53300) and out of memory (53200) are throttled; constraint
violations (class 23), bad data (22), syntax, missing objects and privileges (42), refused logins (28) and
an unknown database (3D000) are permanent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._step import Step
from bounceback.integrations._pack_support import type_names

__all__ = ["POSTGRES_PACK"]

_T, _P, _S = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED
_BY_STATE: Mapping[str, tuple[ErrorKind, str]] = {
    "40001": (_T, "serialization failure: another transaction got there first"),
    "40P01": (_T, "deadlock detected: PostgreSQL cancelled one of the transactions"),
    "57P01": (_T, "the server is shutting down (admin shutdown)"),
    "57P02": (_T, "the server is restarting after a crash"),
    "57P03": (_T, "the server is starting up and cannot take connections yet"),
    "55P03": (_T, "a lock was not available"),
    "57014": (_T, "the statement was cancelled (statement_timeout or a cancel request)"),
    "25006": (_T, "the server is a read-only standby (fail-over in progress?)"),
    "53300": (_S, "too many connections"),
    "53200": (_S, "the server is out of memory"),
    "3D000": (_P, "the database does not exist"),
    "42501": (_P, "insufficient privilege"),
}
_BY_CLASS: Mapping[str, tuple[ErrorKind, str]] = {
    "08": (_T, "the connection failed"),
    "23": (_P, "a constraint was violated"),
    "22": (_P, "the data is invalid"),
    "42": (_P, "the statement is wrong or names something missing"),
    "28": (_P, "the login was refused"),
    "0A": (_P, "the feature is not supported"),
    "2B": (_P, "dependent objects still exist"),
    "44": (_P, "a check option was violated"),
}
_TOPICS = {
    "23": "postgres-constraint",
    "40": "postgres-conflict",
    "28": "postgres-auth",
    "42501": "postgres-auth",
    "53300": "postgres-too-many-connections",
    "57P01": "postgres-restarting",
    "57P02": "postgres-restarting",
    "57P03": "postgres-restarting",
    "42P01": "postgres-schema",
    "42703": "postgres-schema",
    "42883": "postgres-schema",
    "3D000": "postgres-schema",
}
_STATE_NAMES = {
    "28P01": "InvalidPassword",
    "28000": "InvalidAuthorizationSpecification",
    "3D000": "InvalidCatalogName",
    "53300": "TooManyConnections",
    "57P03": "CannotConnectNow",
    "57P01": "AdminShutdown",
}
_SERVER = re.compile(r'server at "([^"]+)"(?: \([^)]*\))?, port (\d{1,5})')


# A refused connection reaches psycopg before any SQLSTATE does: only the server's FATAL text tells why.
_CONNECT_TEXTS = (
    (re.compile(r"password authentication failed|authentication failed for user"), "28P01"),
    (re.compile(r"no pg_hba\.conf entry"), "28000"),
    (re.compile(r'role "[^"]*" does not exist'), "28000"),
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r"too many connections|remaining connection slots are reserved"), "53300"),
    (re.compile(r"the database system is (?:starting up|in recovery mode|not yet accepting)"), "57P03"),
    (re.compile(r"the database system is shutting down"), "57P01"),
)


def _state(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        return state
    if "OperationalError" in _names(exc):
        text = str(exc)
        for pattern, implied in _CONNECT_TEXTS:
            if pattern.search(text):
                return implied
    return None


def _names(exc: BaseException) -> frozenset[str]:
    return type_names(exc)


def _classify(exc: BaseException) -> Classification | None:
    state = _state(exc)
    if state is not None:
        if state in _BY_STATE:
            kind, reason = _BY_STATE[state]
            return Classification(kind, f"PostgreSQL {state}: {reason}")
        if state[:2] in _BY_CLASS:
            kind, reason = _BY_CLASS[state[:2]]
            return Classification(kind, f"PostgreSQL {state}: {reason}")
        return None
    names = _names(exc)
    if "OperationalError" in names:
        return Classification(_T, "the connection to PostgreSQL failed or was lost")
    if names & {"ProgrammingError", "DataError", "IntegrityError", "NotSupportedError"}:
        return Classification(_P, f"psycopg {type(exc).__name__}: the statement or its data is wrong")
    return None


def _facts(exc: BaseException) -> Mapping[str, object]:
    facts: dict[str, object] = {}
    state = _state(exc)
    if state is not None:
        facts["sqlstate"] = state
        facts["sqlstate_name"] = _STATE_NAMES.get(state) or type(exc).__name__
    diag = getattr(exc, "diag", None)
    for fact, attr in (
        ("constraint", "constraint_name"),
        ("table", "table_name"),
        ("column", "column_name"),
        ("schema", "schema_name"),
        ("pg_detail", "message_detail"),
        ("pg_hint", "message_hint"),
    ):
        try:
            value = getattr(diag, attr, None)
        except Exception:
            value = None
        if isinstance(value, str) and value:
            facts[fact] = value
    match = _SERVER.search(str(exc))
    if match is not None:
        facts["host"], facts["port"] = match.group(1), match.group(2)
    return facts


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    state = _state(exc)
    if state is None:
        return None
    return _TOPICS.get(state) or _TOPICS.get(state[:2])


POSTGRES_PACK = ErrorPack(
    "postgres",
    _classify,
    facts=_facts,
    topic=_topic,
    steps={
        "postgres-constraint": (
            Step(
                "pg-constraint",
                "The row breaks the constraint {constraint} on table {table} ({sqlstate_name}): {pg_detail} "
                "Fix the data or the program that writes it; retrying the same row cannot help.",
                "The row breaks the constraint {constraint} on table {table} ({sqlstate_name}). Fix the data "
                "or the program that writes it; retrying the same row cannot help.",
                "The row breaks a constraint ({sqlstate_name}). Fix the data or the program that writes it.",
            ),
            Step(
                "pg-duplicate",
                "For a duplicate key, check whether the work was already done (a retry after a lost answer "
                "may have inserted it): then mark the item done instead of inserting again.",
            ),
        ),
        "postgres-conflict": (
            Step(
                "pg-conflict",
                "Transactions kept colliding ({sqlstate_name}): look for long transactions touching table "
                "{table} (`SELECT * FROM pg_stat_activity WHERE state <> 'idle'`).",
                "Transactions kept colliding ({sqlstate_name}): look for long transactions "
                "(`SELECT * FROM pg_stat_activity WHERE state <> 'idle'`).",
            ),
            Step(
                "pg-lock-order",
                "Make the programs take their locks in the same order (by id) to avoid deadlocks.",
            ),
        ),
        "postgres-auth": (
            Step(
                "pg-login",
                "PostgreSQL refused the login or the privilege ({sqlstate_name}): check the user and password "
                "{operation} uses, and pg_hba.conf on the server for {host}.",
                "PostgreSQL refused the login or the privilege ({sqlstate_name}): check the user, password "
                "and grants {operation} uses, and pg_hba.conf on the server.",
            ),
        ),
        "postgres-too-many-connections": (
            Step(
                "pg-connections",
                "The server at {address} has no free connection slot: check `SELECT count(*) FROM "
                "pg_stat_activity` against max_connections, and close idle connections or use a pool "
                "(pgbouncer).",
                "The server has no free connection slot: check pg_stat_activity against max_connections, and "
                "close idle connections or use a pool (pgbouncer).",
            ),
        ),
        "postgres-restarting": (
            Step(
                "pg-restart",
                "The server at {address} was shut down or restarted ({sqlstate_name}): check its log and "
                "who restarted it; it accepts connections again once `pg_isready -h {host} -p {port}` says so.",
                "The server was shut down or restarted ({sqlstate_name}): check its log; it accepts "
                "connections again once `pg_isready` says so.",
            ),
        ),
        "postgres-schema": (
            Step(
                "pg-schema",
                "The statement names something the database does not have ({sqlstate_name}): check that the "
                "migrations ran on this database and that {operation} connects to the right one.",
            ),
        ),
    },
)
"""The psycopg (PostgreSQL) error pack."""
