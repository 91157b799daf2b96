"""What redis-py's errors mean: the error pack registered for the ``redis`` module.

Connection errors, timeouts and the server's passing states (``BUSY``, ``LOADING``, ``TRYAGAIN``,
``CLUSTERDOWN``, ``MASTERDOWN``, ``READONLY`` after a fail-over, ``MOVED``/``ASK``) are transient; a full
client table is throttled; wrong types, missing scripts, refused credentials or permissions, out of memory
and every other error reply are permanent. Classified by the reply's first word, which Redis documents as
the error code, so it does not depend on which exception class redis-py picked.

>>> import redis
>>> from bounceback.classify import classify
>>> classify(redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")).kind
<ErrorKind.PERMANENT: 'permanent'>
>>> classify(redis.ResponseError("BUSY Redis is busy running a script.")).kind
<ErrorKind.TRANSIENT: 'transient'>
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._step import Step
from bounceback.integrations._pack_support import type_names

__all__ = ["REDIS_PACK"]

_T, _P, _S = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED
_CODE = re.compile(r"^([A-Z][A-Z_-]{2,20})\b")
_BY_CODE: Mapping[str, tuple[ErrorKind, str]] = {
    "BUSY": (_T, "the server is busy running a script or function"),
    "LOADING": (_T, "the server is loading its data set into memory"),
    "TRYAGAIN": (_T, "a cluster slot is being migrated; try again"),
    "CLUSTERDOWN": (_T, "the cluster is down (a slot has no master)"),
    "MASTERDOWN": (_T, "the replica lost its link to the master"),
    "READONLY": (_T, "the node became a read-only replica (fail-over in progress)"),
    "MOVED": (_T, "the key's slot moved to another node"),
    "ASK": (_T, "the key's slot is being migrated"),
    "WRONGTYPE": (_P, "the key holds another type of value than the command works on"),
    "NOSCRIPT": (_P, "the script is not loaded on the server"),
    "NOAUTH": (_P, "the server requires a password"),
    "WRONGPASS": (_P, "the user name or password is wrong"),
    "NOPERM": (_P, "the user is not allowed to run this command or touch this key"),
    "OOM": (_P, "the server reached maxmemory and refuses writes"),
    "EXECABORT": (_P, "the transaction was discarded because of an earlier error"),
}
# Built once: classifying an error that recurs allocates nothing new.
_VERDICTS = {
    code: Classification(kind, f"Redis {code}: {reason}") for code, (kind, reason) in _BY_CODE.items()
}
_TOPIC_OF_CODE = {
    "BUSY": "redis-busy",
    "LOADING": "redis-busy",
    "TRYAGAIN": "redis-cluster",
    "CLUSTERDOWN": "redis-cluster",
    "MASTERDOWN": "redis-cluster",
    "READONLY": "redis-cluster",
    "WRONGTYPE": "redis-wrong-type",
    "NOSCRIPT": "redis-no-script",
    "NOAUTH": "redis-auth",
    "WRONGPASS": "redis-auth",
    "NOPERM": "redis-auth",
    "OOM": "redis-out-of-memory",
}


def _names(exc: BaseException) -> frozenset[str]:
    return type_names(exc, "redis")


# redis-py turns some replies into their own classes and drops the code from the text.
_CODE_OF_CLASS = {
    "NoScriptError": "NOSCRIPT",
    "BusyLoadingError": "LOADING",
    "TryAgainError": "TRYAGAIN",
    "MasterDownError": "MASTERDOWN",
    "ClusterDownError": "CLUSTERDOWN",
    "ReadOnlyError": "READONLY",
    "OutOfMemoryError": "OOM",
    "ExecAbortError": "EXECABORT",
    "NoPermissionError": "NOPERM",
    "MovedError": "MOVED",
    "AskError": "ASK",
}


def _code(exc: BaseException) -> str | None:
    code = _CODE_OF_CLASS.get(type(exc).__name__)
    if code is not None:
        return code
    match = _CODE.match(str(exc))
    return match.group(1) if match else None


def _classify(exc: BaseException) -> Classification | None:
    names = _names(exc)
    if names & {"AuthenticationError", "AuthorizationError", "ExternalAuthProviderError"}:
        return Classification(_P, "Redis refused the credentials")
    if "MaxConnectionsError" in names or "max number of clients" in str(exc):
        return Classification(_S, "Redis has no room for another client")
    if "BusyLoadingError" in names:
        return Classification(_T, _BY_CODE["LOADING"][1])
    if names & {"ConnectionError", "TimeoutError", "InvalidResponse"}:
        return Classification(_T, f"redis {type(exc).__name__}: the connection failed")
    if "WatchError" in names:
        return Classification(_T, "a watched key changed; the transaction may be run again")
    if "SlotNotCoveredError" in names:
        return Classification(_T, "no cluster node covers the slot yet")
    code = _code(exc)
    if code is not None and code in _VERDICTS:
        return _VERDICTS[code]
    if names & {"ResponseError", "DataError", "PubSubError", "RedisClusterException", "LockError"}:
        return Classification(_P, f"Redis answered with an error ({code or type(exc).__name__})")
    return None


def _facts(exc: BaseException) -> Mapping[str, object]:
    code = _code(exc)
    return {"redis_error": code} if code else {}


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    if _names(exc) & {"AuthenticationError", "AuthorizationError"}:
        return "redis-auth"
    return _TOPIC_OF_CODE.get(_code(exc) or "")


REDIS_PACK = ErrorPack(
    "redis",
    _classify,
    facts=_facts,
    topic=_topic,
    steps={
        "redis-wrong-type": (
            Step(
                "redis-key-type",
                "A key {operation} uses holds another type of value than the command expects: run "
                "`redis-cli -h {host} -p {port} TYPE <key>` and check which program writes that key.",
                "A key {operation} uses holds another type of value than the command expects: run "
                "`redis-cli TYPE <key>` and check which program writes that key.",
            ),
            Step(
                "redis-key-names",
                "Two programs may use the same key name for different data: give each its own prefix, "
                "then delete or rename the wrong key.",
            ),
        ),
        "redis-no-script": (
            Step(
                "redis-script-load",
                "The Lua script is not cached on the server (it restarted, failed over, or ran "
                "SCRIPT FLUSH): load it again (SCRIPT LOAD), or call it with EVAL instead of EVALSHA.",
            ),
        ),
        "redis-auth": (
            Step(
                "redis-credentials",
                "Check the Redis user and password {operation} uses (Redis said {redis_error}); see "
                "`ACL LIST` on the server.",
                "Check the Redis user and password {operation} uses; see `ACL LIST` on the server.",
            ),
            Step(
                "redis-acl",
                "If the password is right, check the user's ACL rules: allowed commands and key patterns.",
            ),
        ),
        "redis-busy": (
            Step(
                "redis-busy-script",
                "The server is busy ({redis_error}): a long script is running or the data set is still "
                "loading. Wait for it, or see `redis-cli -h {host} -p {port} INFO persistence`.",
                "The server is busy ({redis_error}): a long script is running or the data set is still "
                "loading. Wait for it, or look at `INFO persistence` on the server.",
                "The server is busy: a long script is running or the data set is still loading.",
            ),
            Step(
                "redis-script-kill",
                "If a runaway script holds the server, stop it with `SCRIPT KILL` (or `FUNCTION KILL`).",
            ),
        ),
        "redis-cluster": (
            Step(
                "redis-cluster-state",
                "The cluster is changing ({redis_error}): check `CLUSTER INFO` and `CLUSTER NODES` for "
                "failed masters and slots being migrated.",
                "The cluster is changing: check `CLUSTER INFO` and `CLUSTER NODES`.",
            ),
        ),
        "redis-out-of-memory": (
            Step(
                "redis-memory",
                "The server reached maxmemory and refuses writes: check `INFO memory`, the eviction "
                "policy (maxmemory-policy) and which keys grew.",
            ),
        ),
    },
)
"""The redis-py error pack."""
