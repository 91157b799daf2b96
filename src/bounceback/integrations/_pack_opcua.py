"""What asyncua's errors mean: the error pack registered for the ``asyncua`` module.

OPC UA status codes by meaning: a server that is not connected, timing out, shutting down, failing to
communicate or waiting for data is transient; one with too many sessions, operations, subscriptions or a
busy TCP layer is throttled; an unknown or invalid node id, a denied user, a refused identity or
certificate, a type mismatch or a node that cannot be read or written is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._step import Step

__all__ = ["OPCUA_PACK"]

_T, _P, _S = ErrorKind.TRANSIENT, ErrorKind.PERMANENT, ErrorKind.THROTTLED
_TRANSIENT = frozenset(
    {
        "BadTimeout",
        "BadRequestTimeout",
        "BadServerNotConnected",
        "BadNotConnected",
        "BadCommunicationError",
        "BadNoCommunication",
        "BadConnectionClosed",
        "BadConnectionRejected",
        "BadDisconnect",
        "BadSecureChannelClosed",
        "BadSecureChannelIdInvalid",
        "BadSecureChannelTokenUnknown",
        "BadTcpSecureChannelUnknown",
        "BadSessionClosed",
        "BadSessionIdInvalid",
        "BadSessionNotActivated",
        "BadShutdown",
        "BadServerHalted",
        "BadWaitingForInitialData",
        "BadWaitingForResponse",
        "BadOutOfService",
    }
)
_THROTTLED = frozenset(
    {
        "BadTooManySessions",
        "BadTooManyOperations",
        "BadTooManySubscriptions",
        "BadTooManyPublishRequests",
        "BadTooManyMonitoredItems",
        "BadServerTooBusy",
        "BadTcpServerTooBusy",
        "BadTcpNotEnoughResources",
        "BadResourceUnavailable",
        "BadMaxConnectionsReached",
    }
)
_TOPICS = {
    "BadNodeIdUnknown": "opcua-node-unknown",
    "BadNodeIdInvalid": "opcua-node-unknown",
    "BadUserAccessDenied": "opcua-access-denied",
    "BadNotReadable": "opcua-access-denied",
    "BadNotWritable": "opcua-access-denied",
    "BadIdentityTokenInvalid": "opcua-access-denied",
    "BadIdentityTokenRejected": "opcua-access-denied",
    "BadTypeMismatch": "opcua-type-mismatch",
    "BadOutOfRange": "opcua-type-mismatch",
}


def _status(exc: BaseException) -> str | None:
    """The status code name of an asyncua status error (its class is named after it)."""
    if not any(cls.__name__ == "UaStatusCodeError" for cls in type(exc).__mro__):
        return None
    name = type(exc).__name__
    if name.startswith(("Bad", "Uncertain")):
        return name
    try:
        from asyncua.ua.status_codes import get_name_and_doc

        found = get_name_and_doc(getattr(exc, "code", 0))[0]
    except Exception:
        return None
    return found if isinstance(found, str) else None


def _classify(exc: BaseException) -> Classification | None:
    name = _status(exc)
    if name is None:
        return None
    if name in _TRANSIENT:
        return Classification(_T, f"OPC UA {name}: a passing condition of the server or the link")
    if name in _THROTTLED:
        return Classification(_S, f"OPC UA {name}: the server is at its limits")
    if name.startswith("Bad"):
        return Classification(_P, f"OPC UA {name}: the server refused the request")
    return None


def _facts(exc: BaseException) -> Mapping[str, object]:
    facts: dict[str, object] = {}
    name = _status(exc)
    if name is not None:
        facts["opcua_status"] = name
        try:
            from asyncua.ua.status_codes import get_name_and_doc

            doc = get_name_and_doc(getattr(exc, "code", 0))[1]
            if isinstance(doc, str) and doc:
                facts["opcua_status_text"] = doc.rstrip(".")
        except Exception:
            pass
    node = getattr(exc, "node_id", None)
    if node is not None:
        facts["node_id"] = node
    endpoint = getattr(exc, "endpoint", None)
    if isinstance(endpoint, str):
        facts["endpoint"] = endpoint
        facts["url"] = endpoint
    return facts


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    name = _status(exc)
    if name is None:
        return None
    if name in _TOPICS:
        return _TOPICS[name]
    if name in _THROTTLED:
        return "opcua-server-busy"
    if name in _TRANSIENT:
        return "opcua-link"
    if name.startswith(("BadCertificate", "BadSecurity")):
        return "opcua-security"
    return None


OPCUA_PACK = ErrorPack(
    "opcua",
    _classify,
    facts=_facts,
    topic=_topic,
    steps={
        "opcua-node-unknown": (
            Step(
                "opcua-browse",
                "The server at {endpoint} has no node {node_id} ({opcua_status}): browse the address space "
                "(UaExpert, or `uals --url {endpoint}`) and copy the node id exactly, namespace index included.",
                "The server has no node {node_id} ({opcua_status}): browse the address space (UaExpert or "
                "uals) and copy the node id exactly, namespace index included.",
                "The server has no such node ({opcua_status}): browse the address space and check the node id.",
            ),
            Step(
                "opcua-namespace",
                "Namespace indexes (ns=2) can change when the server's configuration changes: prefer looking "
                "the index up by namespace URI at connect time.",
            ),
            Step(
                "opcua-project-download",
                "If the node existed before, the PLC or server project may have been changed or re-downloaded: "
                "ask who changed it.",
            ),
        ),
        "opcua-access-denied": (
            Step(
                "opcua-user-rights",
                "The server refused {opcua_status} on {node_id}: check the user {operation} logs in as and "
                "that user's rights on that node (read, write) in the server's configuration.",
                "The server refused the request ({opcua_status}): check the user the program logs in as "
                "and its rights on the node in the server's configuration.",
            ),
            Step(
                "opcua-anonymous",
                "If the program connects anonymously, check whether the server allows anonymous access at all.",
            ),
        ),
        "opcua-type-mismatch": (
            Step(
                "opcua-data-type",
                "The value written to {node_id} has the wrong data type ({opcua_status}): read the node's "
                "DataType attribute and send exactly that type (Int16 is not Int32, Float is not Double).",
                "The value written has the wrong data type or range ({opcua_status}): read the node's "
                "DataType attribute and send exactly that type.",
            ),
        ),
        "opcua-server-busy": (
            Step(
                "opcua-sessions",
                "The server at {endpoint} is at its limits ({opcua_status}): check how many sessions and "
                "subscriptions are open (stale sessions of crashed clients count until they time out).",
                "The server is at its limits ({opcua_status}): check how many sessions and subscriptions are "
                "open (stale sessions of crashed clients count until they time out).",
            ),
            Step(
                "opcua-limits",
                "Raise the server's session or operation limits, or close sessions the program no longer uses.",
            ),
        ),
        "opcua-link": (
            Step(
                "opcua-server-up",
                "The link to the OPC UA server at {endpoint} failed ({opcua_status}): check that the server "
                "runs and that the network to it is up.",
                "The link to the OPC UA server failed ({opcua_status}): check that the server runs and that "
                "the network to it is up.",
            ),
            Step(
                "opcua-session-timeout",
                "If sessions keep closing, compare the client's session timeout with the server's limits.",
            ),
        ),
        "opcua-security": (
            Step(
                "opcua-trust",
                "The secure channel was refused ({opcua_status}): check that the server trusts the client's "
                "certificate (move it from 'rejected' to 'trusted') and that both clocks are right.",
                "The secure channel was refused: check the certificates on both sides and the clocks.",
            ),
        ),
    },
)
"""The asyncua error pack."""
