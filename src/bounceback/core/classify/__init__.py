"""Classification of errors: rules, the standard library's defaults, error packs for client libraries, Retry-After hints and the facts guidance is drawn from."""

from __future__ import annotations

from bounceback.core.classify._defaults import forget_types
from bounceback.core.classify._facts import (
    clean_text,
    error_chain,
    error_facts,
    format_clock_time,
    format_duration,
)
from bounceback.core.classify._packs import (
    ErrorPack,
    pack_classify,
    pack_facts,
    pack_for,
    pack_steps,
    pack_topic,
    register_pack,
    unregister_pack,
    when_packs_change,
)
from bounceback.core.classify._retry_after import parse_retry_after
from bounceback.core.classify._rules import (
    DEFAULT_CLASSIFIER,
    Classifier,
    ClassifierLike,
    Rule,
    Verdict,
    as_classifier,
    classify,
    mark,
    on_errno,
    on_message,
    on_predicate,
    on_type,
)
from bounceback.core.classify._step import KEY, RenderedStep, Step

__all__ = [
    "Classifier",
    "ClassifierLike",
    "DEFAULT_CLASSIFIER",
    "ErrorPack",
    "KEY",
    "RenderedStep",
    "Rule",
    "Step",
    "Verdict",
    "as_classifier",
    "classify",
    "clean_text",
    "error_chain",
    "error_facts",
    "forget_types",
    "format_clock_time",
    "format_duration",
    "mark",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
    "pack_classify",
    "pack_facts",
    "pack_for",
    "pack_steps",
    "pack_topic",
    "parse_retry_after",
    "register_pack",
    "unregister_pack",
    "when_packs_change",
]
