"""Helpers shared by the error packs."""

from __future__ import annotations

__all__ = ["type_names"]

_NAMES: dict[tuple[type[BaseException], str], frozenset[str]] = {}
_NAMES_MAX = 4096


def type_names(exc: BaseException, prefix: str = "") -> frozenset[str]:
    """The names of the classes ``type(exc)`` derives from (those of modules starting with ``prefix``),
    cached per type: packs match a library's classes by name, so they never import the library.

    >>> sorted(type_names(ConnectionResetError()))[:3]
    ['BaseException', 'ConnectionError', 'ConnectionResetError']
    """
    key = (type(exc), prefix)
    names = _NAMES.get(key)
    if names is None:
        names = frozenset(k.__name__ for k in key[0].__mro__ if k.__module__.startswith(prefix))
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[key] = names
    return names
