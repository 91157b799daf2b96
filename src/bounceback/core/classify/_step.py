"""A guidance step (a stable key and alternative texts with placeholders) and a step as rendered."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from bounceback.errors import ConfigError

__all__ = ["KEY", "RenderedStep", "Step"]

KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")
_FORMATTER = string.Formatter()


def _fields(template: str) -> tuple[str, ...]:
    """The placeholder names of ``template``; only plain names are allowed (no attribute or index)."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ConfigError("text", template, f"a text with balanced {{placeholders}} ({exc})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ConfigError(
                "text",
                template,
                "placeholders that are plain names such as {host} or {port}",
                hint="attribute access, indexing and format specs are not allowed in guidance",
            )
        names.append(name)
    return tuple(names)


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words)[:40].strip("-") or "step"


class Step:
    """One guidance step: a stable ``key`` and alternative ``texts`` with ``{placeholders}``.

    The first text whose placeholders are all known facts is shown; when none is, the step is left out.

    >>> step = Step("service-up", "Check that {address} is up.", "Check that the service is up.")
    >>> step.render({"address": "10.0.0.7:8080"}), step.render({})
    ('Check that 10.0.0.7:8080 is up.', 'Check that the service is up.')
    """

    __slots__ = ("_fields", "key", "texts")

    def __init__(self, key: str, *texts: str) -> None:
        if not isinstance(key, str) or not KEY.match(key):
            raise ConfigError("key", key, "a short lower-case key such as 'service-up' (a-z, 0-9, ., _, -)")
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise ConfigError("texts", texts, "one or more non-empty texts")
        self.key = key
        self.texts = texts
        self._fields = tuple(_fields(t) for t in texts)

    @classmethod
    def of(cls, step: Step | str) -> Step:
        """A Step as is, or a text made into a Step whose key is derived from the text."""
        return step if isinstance(step, Step) else cls(_slug(step), step)

    def render(self, facts: Mapping[str, str]) -> str | None:
        """The first text whose placeholders are all in ``facts``, filled in; None when none is."""
        for text, names in zip(self.texts, self._fields, strict=True):
            if all(facts.get(n) for n in names):
                # Only the trusted template is formatted; the facts are substituted as plain strings.
                return text.format_map({n: facts[n] for n in names}) if names else text
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Step) and (self.key, self.texts) == (other.key, other.texts)

    def __hash__(self) -> int:
        return hash((self.key, self.texts))

    def __repr__(self) -> str:
        return f"Step({self.key!r}, {', '.join(repr(t) for t in self.texts)})"


@dataclass(frozen=True, slots=True)
class RenderedStep:
    """A step as shown for one ticket: its ``key`` and its filled-in ``text``."""

    key: str
    text: str
