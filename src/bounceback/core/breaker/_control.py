"""The limits part of a circuit breaker: where its configuration comes from, layered and followed live.

A breaker's limits come from three layers, lowest first: a settings source (a mapping of settings keys,
or a live source with ``effective(name)`` and ``subscribe(callback)``), keys applied while running
(:meth:`Limits.apply_settings`), and keyword arguments given in code (:meth:`Limits.configure`). A
:class:`Limits` part holds the layers and builds a validated
:class:`~bounceback.core.breaker._config.BreakerConfig` from them; a breaker left at the defaults makes
none and shares the one default config.

Every change builds the whole config first and keeps the layers unchanged when it is invalid, so a bad
value changes nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

from bounceback.core.breaker._config import SETTINGS_KEYS, STORE_KEYS, BreakerConfig, build_config
from bounceback.errors import ConfigError

__all__ = ["Limits"]

_NOTHING: Mapping[str, Any] = {}


class Limits:
    """The layers of a breaker's limits (settings source < settings applied < arguments in code).

    >>> limits = Limits("docs-limits", {"breaker.window": 50}, {"failure_rate": 20})
    >>> cfg = limits.build()
    >>> cfg.window, cfg.failure_rate
    (50, 20.0)
    >>> limits.configure({"window": 10}).window
    10
    """

    __slots__ = ("explicit", "name", "overlay", "settings", "unsubscribe")

    def __init__(self, name: str, settings: Any = None, explicit: dict[str, Any] | None = None) -> None:
        self.name = name
        self.settings = settings
        self.explicit: dict[str, Any] = explicit if explicit is not None else {}
        self.overlay: Mapping[str, Any] = _NOTHING
        self.unsubscribe: Callable[[], None] | None = None

    def build(self) -> BreakerConfig:
        """The config of the current layers (raises ConfigError naming the key or argument at fault)."""
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        src = self.settings
        layers: list[Mapping[str, Any]] = []
        if src is not None:
            layers.append(src if isinstance(src, Mapping) else src.effective(self.name))
        layers.append(self.overlay)
        for layer in layers:
            for key, field in (*SETTINGS_KEYS.items(), *STORE_KEYS.items()):
                if key in layer:
                    values[field] = layer[key]
                    labels[field] = key
        for field, value in self.explicit.items():
            values[field] = value
            labels.pop(field, None)
        return build_config(values, labels)

    def configure(self, limits: Mapping[str, Any]) -> BreakerConfig:
        """Add ``limits`` (field names) to the arguments in code; the new config, or ConfigError and no change."""
        before = self.explicit
        self.explicit = {**before, **limits}
        try:
            return self.build()
        except ConfigError:
            self.explicit = before
            raise

    def apply_settings(self, values: Mapping[str, Any]) -> BreakerConfig:
        """Apply ``breaker.*`` settings keys (others are ignored); the new config, or ConfigError and no change."""
        unknown = [k for k in values if k.startswith("breaker.") and k not in SETTINGS_KEYS]
        unknown = [k for k in unknown if k != "breaker.enabled"]
        if unknown:
            raise ConfigError(unknown[0], values[unknown[0]], "a key among " + ", ".join(SETTINGS_KEYS))
        before = self.overlay
        self.overlay = {**before, **{k: v for k, v in values.items() if k in SETTINGS_KEYS}}
        try:
            return self.build()
        except ConfigError:
            self.overlay = before
            raise

    def follow(self, owner: Any) -> None:
        """Subscribe to the live settings source: ``owner.reload()`` runs on every change (weakly held)."""
        ref = weakref.ref(owner)

        def on_change() -> None:
            target = ref()
            if target is not None:
                target.reload()

        self.unsubscribe = self.settings.subscribe(on_change)
