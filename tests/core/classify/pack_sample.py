"""A small error pack for the registry's tests, imported by name the first time one of its errors is seen."""

from __future__ import annotations

from bounceback import Classification, ErrorKind
from bounceback.classify import ErrorPack
from bounceback.recovery import Step

LOADS = []
LOADS.append(1)  # counts imports of this module: a pack is imported once, on first need


def _classify(exc: BaseException) -> Classification | None:
    if "dry" in str(exc):
        return Classification(ErrorKind.PERMANENT, "the pump runs dry")
    if "surge" in str(exc):
        raise RuntimeError("a pack with a bug")
    return None


PACK = ErrorPack(
    "pumps",
    _classify,
    facts=lambda e: {"pump": getattr(e, "pump", None)},
    topic=lambda e, facts: "pump-dry" if "dry" in str(e) else None,
    steps={
        "pump-dry": (Step("pump-prime", "Prime pump {pump} and open its suction valve.", "Prime the pump."),)
    },
)
