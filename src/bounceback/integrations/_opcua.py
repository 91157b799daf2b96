"""OPC UA helpers: :func:`opcua_node` names the node an asyncua error was about.

asyncua raises status-code errors (``BadNodeIdUnknown``, ``BadUserAccessDenied`` ...) that do not say
which node was read or written. Wrap the call, and the OPC UA pack's guidance names it:

    async def read_temperature():
        with opcua_node(node, endpoint="opc.tcp://127.0.0.1:4840"):
            return await node.read_value()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["opcua_node"]


def _node_text(node: Any) -> str:
    nodeid = getattr(node, "nodeid", node)
    to_string = getattr(nodeid, "to_string", None)
    if callable(to_string):
        try:
            return str(to_string())
        except Exception:
            return str(nodeid)
    return str(nodeid)


@contextlib.contextmanager
def opcua_node(node: Any, *, endpoint: str | None = None) -> Iterator[None]:
    """Mark an error raised in the block with the node (``node_id``) and ``endpoint`` it concerned.

    ``node`` is an asyncua ``Node``, a ``NodeId`` or a node id text (``"ns=2;s=Line1.Temperature"``).

    >>> try:
    ...     with opcua_node("ns=2;s=Line1.Temperature"):
    ...         raise RuntimeError("BadNodeIdUnknown")
    ... except RuntimeError as err:
    ...     print(err.node_id)
    ns=2;s=Line1.Temperature
    """
    try:
        yield
    except Exception as exc:
        if getattr(exc, "node_id", None) is None:
            exc.node_id = _node_text(node)  # type: ignore[attr-defined]
        if endpoint is not None and getattr(exc, "endpoint", None) is None:
            exc.endpoint = endpoint  # type: ignore[attr-defined]
        raise
