"""Sources of user settings for a Policy: the port a settings source implements and a static source for
code and tests (the SQLite-backed source, picked up live by running programs, is in :mod:`bounceback.stores`).
"""

from __future__ import annotations

from bounceback.core.settings._source import SettingsSource, StaticSettings

__all__ = ["SettingsSource", "StaticSettings"]
