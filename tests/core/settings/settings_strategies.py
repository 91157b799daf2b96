"""Hypothesis strategies for valid settings, derived from the schema (shared by the settings tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from bounceback.core.settings._setting import MAX_SECONDS, Setting
from bounceback.core.settings._source import SCHEMA, SettingsLayers, defaults

GLOBAL_KEYS = list(SCHEMA)
OPERATION_KEYS = [k for k, s in SCHEMA.items() if s.per_operation]

# Printable text without control or format characters or surrogates (refused in names and text settings).
_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp")),
    max_size=40,
)


def values(setting: Setting) -> st.SearchStrategy[Any]:
    """Any valid, already normalised value of ``setting``."""
    kind = setting.kind
    if kind == "bool":
        out: st.SearchStrategy[Any] = st.booleans()
    elif kind == "choice":
        out = st.sampled_from(setting.choices)
    elif kind == "int":
        out = st.integers(int(setting.minimum or 0), int(setting.maximum or 0))
    elif kind in ("float", "percent", "duration"):
        high = setting.maximum if setting.maximum is not None else MAX_SECONDS
        out = st.floats(
            setting.minimum or 0.0,
            high,
            exclude_min=setting.min_exclusive,
            allow_nan=False,
            allow_infinity=False,
        ).map(lambda x: x + 0.0)  # -0.0 -> 0.0: the schema normalises nothing else
    elif kind == "codes":
        out = st.lists(st.integers(0, 255), max_size=5).map(lambda xs: tuple(sorted(set(xs))))
    elif setting.schemes:
        host = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-:/", min_size=1, max_size=30)
        out = st.just("") | st.builds(lambda s, h: s + h, st.sampled_from(setting.schemes), host)
    else:
        out = _TEXT.map(str.strip)
    if setting.nullable:
        out = st.none() | out
    return out


def layer(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of some of ``keys`` with valid values."""
    return st.lists(st.sampled_from(keys), unique=True, max_size=8).flatmap(
        lambda chosen: st.fixed_dictionaries({k: values(SCHEMA[k]) for k in chosen})
    )


operation_names = _TEXT.filter(lambda s: s and s == s.strip() and len(s) <= 200)


def _repair(own: dict[str, Any], below: dict[str, Any]) -> dict[str, Any]:
    """Adjust ``own`` (a layer over the resolved values ``below``) so every combination is valid."""
    fixed = dict(own)
    effective = {**below, **fixed}
    for low, high in (
        ("retry.initial_delay", "retry.max_delay"),
        ("breaker.open_seconds", "breaker.open_seconds_max"),
    ):
        if effective[low] > effective[high]:
            fixed[high] = effective[high] = effective[low]
    transient, permanent = effective["run.transient_codes"], effective["run.permanent_codes"]
    if set(transient) & set(permanent):
        fixed["run.permanent_codes"] = tuple(sorted(set(permanent) - set(transient)))
    if effective.get("store.backend") == "redis" and not effective.get("store.redis_url"):
        fixed["store.redis_url"] = "redis://127.0.0.1:6379/0"  # the redis backend needs its URL
    return fixed


@st.composite
def valid_layers(draw: st.DrawFn) -> SettingsLayers:
    """Global and per-operation values whose every combination is valid."""
    values_ = _repair(draw(layer(GLOBAL_KEYS)), defaults())
    below = {**defaults(), **values_}
    operations = {
        op: _repair(own, below)
        for op, own in draw(
            st.dictionaries(operation_names, layer(OPERATION_KEYS).filter(bool), max_size=3)
        ).items()
    }
    layers = SettingsLayers(values_, operations)
    assert layers.problems() == [], layers
    return layers
