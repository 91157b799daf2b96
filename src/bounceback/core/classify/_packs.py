"""Error packs: what a client library's errors mean, taught to every classifier without a line of user code.

A pack knows the exceptions of one library (redis-py, grpcio, pymodbus, asyncua, aiohttp, psycopg ...): how
to classify them, which facts they carry (a node id, a register, an SQLSTATE), which guidance topic they
belong to and the steps a person follows for that topic. Packs are registered by the top-level module
their exception types live in, as ``"package.module:ATTRIBUTE"`` strings, and imported only when an error
of that library is classified for the first time: a program that never fails, or whose errors come from
elsewhere, never imports a pack. The pack found for an exception type is cached per type.

>>> from bounceback import Classification, ErrorKind
>>> from bounceback.classify import ErrorPack, classify, register_pack
>>> class PumpError(Exception): ...
>>> PumpError.__module__ = "pumpco.errors"        # as if defined by the pumpco library
>>> register_pack("pumpco", ErrorPack("pumps", lambda e: Classification(ErrorKind.PERMANENT, "dry run")))
>>> classify(PumpError("no water")).reason
'dry run'
>>> unregister_pack("pumpco")
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from bounceback.core._kinds import Classification
from bounceback.core.classify._step import KEY, Step
from bounceback.errors import ConfigError

__all__ = [
    "ErrorPack",
    "pack_classify",
    "pack_facts",
    "pack_for",
    "pack_steps",
    "pack_topic",
    "register_pack",
    "unregister_pack",
    "when_packs_change",
]

_log = logging.getLogger("bounceback.packs")

Facts = Callable[[BaseException], Mapping[str, object]]
Topic = Callable[[BaseException, Mapping[str, str]], "str | None"]


def _no_facts(_exc: BaseException) -> Mapping[str, object]:
    return {}


def _no_topic(_exc: BaseException, _facts: Mapping[str, str]) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class ErrorPack:
    """What one library's errors mean for recovery and for the person who gets the ticket.

    ``classify(exc)`` returns a :class:`Classification`, or None to leave the error to the defaults.
    ``facts(exc)`` returns extra facts guidance may name (``{node_id}``, ``{register}`` ...);
    ``topic(exc, facts)`` the guidance topic, or None for the built-in one; ``steps`` maps each of the
    pack's topics to its steps. A pack's functions must not raise: an exception from them is logged and
    the pack is skipped for that error.

    >>> ErrorPack("valves", lambda e: None).name
    'valves'
    """

    name: str
    classify: Callable[[BaseException], Classification | None]
    facts: Facts = _no_facts
    topic: Topic = _no_topic
    steps: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not KEY.match(self.name):
            raise ConfigError("name", self.name, "a short lower-case name such as 'modbus'")
        if not callable(self.classify):
            raise ConfigError("classify", self.classify, "a function(error) -> Classification | None")
        for topic in self.steps:
            if not KEY.match(topic):
                raise ConfigError("steps", topic, "topic names such as 'modbus-device-busy'")


_lock = threading.Lock()
_sources: dict[str, ErrorPack | str] = {}
_loaded: dict[str, ErrorPack | None] = {}
_by_type: dict[type[BaseException], ErrorPack | None] = {}
_BY_TYPE_MAX = 2048


def register_pack(modules: str | Iterable[str], pack: ErrorPack | str) -> None:
    """Use ``pack`` for exceptions whose type (or a base of it) is defined in ``modules``.

    ``modules`` are top-level package names (``"redis"``, ``"grpc"``); ``pack`` is an :class:`ErrorPack`,
    or ``"package.module:ATTRIBUTE"`` naming one, imported when such an error is first classified. A later
    registration for the same module replaces the earlier one.
    """
    names = [modules] if isinstance(modules, str) else list(modules)
    if not names or not all(isinstance(n, str) and n and "." not in n for n in names):
        raise ConfigError("modules", modules, "top-level package names such as 'redis' or 'grpc'")
    if isinstance(pack, str):
        if ":" not in pack:
            raise ConfigError("pack", pack, "an ErrorPack, or 'package.module:ATTRIBUTE'")
    elif not isinstance(pack, ErrorPack):
        raise ConfigError("pack", pack, "an ErrorPack, or 'package.module:ATTRIBUTE'")
    with _lock:
        for name in names:
            _sources[name] = pack
            _loaded.pop(name, None)
    _forget()


def unregister_pack(modules: str | Iterable[str]) -> None:
    """Forget the packs of ``modules`` (tests and programs that bring their own)."""
    names = [modules] if isinstance(modules, str) else list(modules)
    with _lock:
        for name in names:
            _sources.pop(name, None)
            _loaded.pop(name, None)
    _forget()


_listeners: list[Callable[[], None]] = []


def when_packs_change(callback: Callable[[], None]) -> None:
    """Call ``callback()`` whenever a pack is registered or removed (the classifier's per-type cache does,
    so this module need not know it: the arrow points from the classifier to the packs only)."""
    _listeners.append(callback)


def _forget() -> None:
    # Verdicts cached per type may have been decided without the new pack.
    with _lock:
        _by_type.clear()
    for callback in _listeners:
        callback()


def _load(module: str) -> ErrorPack | None:
    if module in _loaded:
        return _loaded[module]
    source = _sources.get(module)
    pack: ErrorPack | None = None
    if isinstance(source, ErrorPack):
        pack = source
    elif source is not None:
        path, _, attr = source.partition(":")
        try:
            found = getattr(importlib.import_module(path), attr)
        except Exception:  # an optional library too old or broken must not break classification
            _log.warning(
                "error pack %s could not be loaded; its errors get the defaults", source, exc_info=True
            )
            found = None
        pack = found if isinstance(found, ErrorPack) else None
    with _lock:
        _loaded[module] = pack
    return pack


def pack_for(cls: type[BaseException]) -> ErrorPack | None:
    """The pack that knows exceptions of type ``cls`` (by the module of the type or of its bases)."""
    try:
        return _by_type[cls]
    except KeyError:
        pass
    pack = None
    if _sources:
        for klass in cls.__mro__:
            module = getattr(klass, "__module__", None)
            top = module.partition(".")[0] if isinstance(module, str) else ""
            if top in _sources:
                pack = _load(top)
                if pack is not None:
                    break
    if len(_by_type) < _BY_TYPE_MAX:
        _by_type[cls] = pack
    return pack


def pack_classify(pack: ErrorPack, exc: BaseException) -> Classification | None:
    """``pack.classify(exc)``, with a failing pack logged and treated as having no answer."""
    try:
        verdict = pack.classify(exc)
    except Exception:
        _log.warning("error pack %s failed to classify %s", pack.name, type(exc).__name__, exc_info=True)
        return None
    return verdict if isinstance(verdict, Classification) else None


def pack_facts(exc: BaseException) -> Mapping[str, object]:
    """The facts the pack of ``exc`` reads from it (none when no pack knows it)."""
    pack = pack_for(type(exc))
    if pack is None:
        return {}
    try:
        return pack.facts(exc)
    except Exception:
        _log.warning("error pack %s failed to read facts", pack.name, exc_info=True)
        return {}


def pack_topic(exc: BaseException, facts: Mapping[str, str]) -> str | None:
    """The guidance topic the pack of ``exc`` gives it, if any."""
    pack = pack_for(type(exc))
    if pack is None:
        return None
    try:
        topic = pack.topic(exc, facts)
    except Exception:
        _log.warning("error pack %s failed to name a topic", pack.name, exc_info=True)
        return None
    return topic if isinstance(topic, str) and KEY.match(topic) else None


def pack_steps(topic: str) -> tuple[Step, ...]:
    """The steps the loaded packs give for ``topic``."""
    with _lock:
        packs = [p for p in _loaded.values() if p is not None]
    for pack in packs:
        steps = pack.steps.get(topic)
        if steps:
            return steps
    return ()
