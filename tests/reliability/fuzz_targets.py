"""Coverage-guided fuzzing (atheris, libFuzzer) of the parsers that read untrusted text.

    python -m tests.reliability.fuzz_targets retry-after -runs=20000
    python -m tests.reliability.fuzz_targets setting-text -runs=20000
    python -m tests.reliability.fuzz_targets settings-document -runs=20000

Each target states its invariant with ``assert``; libFuzzer stops at the first input that breaks it (or
raises anything but the documented ConfigError) and writes that input to ``crash-*``. The test suite runs
each target for a bounded number of inputs (``test_fuzz.py``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import atheris

with atheris.instrument_imports():
    from bounceback.core.classify._retry_after import parse_retry_after
    from bounceback.core.settings._source import SCHEMA, layers_from_document, parse_document
    from bounceback.errors import ConfigError

__all__ = ["TARGETS"]

_KEYS = sorted(SCHEMA)


def retry_after(data: bytes) -> None:
    """Never raises; None or a finite number of seconds >= 0, for text and for raw header bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    now = fdp.ConsumeFloatInRange(-1e12, 1e12)
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    for value in (raw, raw.decode("latin-1")):
        seconds = parse_retry_after(value, now=now)
        assert seconds is None or (math.isfinite(seconds) and seconds >= 0), (value, seconds)


def setting_text(data: bytes) -> None:
    """A value typed by a person: refused with ConfigError naming the key, or read back to itself."""
    fdp = atheris.FuzzedDataProvider(data)
    setting = SCHEMA[_KEYS[fdp.ConsumeIntInRange(0, len(_KEYS) - 1)]]
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        value = setting.parse(text)
    except ConfigError as exc:
        assert exc.field == setting.key and "expected" in str(exc), str(exc)  # noqa: PT017
        return
    assert setting.validate(value) == value
    assert setting.parse(setting.to_text(value)) == value, (text, value, setting.to_text(value))


def settings_document(data: bytes) -> None:
    """A settings file to import: a ConfigError (with the problems) or layers; never anything else."""
    fdp = atheris.FuzzedDataProvider(data)
    fmt = "toml" if fdp.ConsumeBool() else "json"
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    try:
        document = parse_document(text, fmt, source="fuzz")
    except ConfigError:
        return
    layers, problems = layers_from_document(document)
    assert all(isinstance(p, ConfigError) for p in problems)
    if not problems:
        for _op, key, value in layers.entries():
            assert SCHEMA[key].validate(value) == value


TARGETS: dict[str, Callable[[bytes], None]] = {
    "retry-after": retry_after,
    "setting-text": setting_text,
    "settings-document": settings_document,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(
            f"usage: python -m tests.reliability.fuzz_targets {{{','.join(TARGETS)}}} [libFuzzer flags]"
        )
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
