"""Deciding what an error means: the verdict (:class:`Classification`, :class:`ErrorKind`), rules that match
errors by type, errno, message or predicate, the default classifier and its standard-library rules, error packs
for client libraries, and the parsing of Retry-After hints.

>>> from bounceback.classify import classify
>>> classify(ConnectionResetError()).kind.value
'transient'
"""

from __future__ import annotations

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack, register_pack, unregister_pack
from bounceback.core.classify._retry_after import parse_retry_after
from bounceback.core.classify._rules import (
    DEFAULT_CLASSIFIER,
    Classifier,
    Rule,
    classify,
    mark,
    on_errno,
    on_message,
    on_predicate,
    on_type,
)

__all__ = [
    "Classification",
    "Classifier",
    "DEFAULT_CLASSIFIER",
    "ErrorKind",
    "ErrorPack",
    "Rule",
    "classify",
    "mark",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
    "parse_retry_after",
    "register_pack",
    "unregister_pack",
]
