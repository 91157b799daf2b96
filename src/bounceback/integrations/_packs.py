"""The error packs bounceback ships, registered for every classifier when bounceback is imported.

Only the names are registered here: a pack module (and the client library it reads) is imported the first
time an error from that library is classified, so a program pays nothing for the packs it does not use and
nothing at all on its success path. Each library is an optional extra (``bounceback[modbus]``, ``[opcua]``,
``[grpc]``, ``[aiohttp]``, ``[postgres]``, ``[redis]``); a library that is not installed raises no errors
and its pack is never loaded.
"""

from __future__ import annotations

from bounceback.core.classify._packs import register_pack

__all__ = ["BUILTIN_PACKS", "register_builtin_packs"]

BUILTIN_PACKS: dict[str, str] = {
    "redis": "bounceback.integrations._pack_redis:REDIS_PACK",
    "grpc": "bounceback.integrations._pack_grpc:GRPC_PACK",
    "pymodbus": "bounceback.integrations._pack_modbus:MODBUS_PACK",
    "asyncua": "bounceback.integrations._pack_opcua:OPCUA_PACK",
    "aiohttp": "bounceback.integrations._pack_aiohttp:AIOHTTP_PACK",
    "psycopg": "bounceback.integrations._pack_postgres:POSTGRES_PACK",
}
"""Top-level module of a client library -> the pack that knows its errors."""


def register_builtin_packs() -> None:
    """Register every shipped pack (done once when bounceback is imported; again restores them)."""
    for module, pack in BUILTIN_PACKS.items():
        register_pack(module, pack)


register_builtin_packs()
