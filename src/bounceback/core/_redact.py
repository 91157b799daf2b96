"""Credentials masked in text that leaves the program: error messages in events, logs, the journal, tickets.

Error messages often carry the URL that failed, and URLs carry secrets: ``https://ann:hunter2@host/``, a
``?token=`` or ``&api_key=`` parameter, or a header echoed back (``Authorization: Bearer ...``). Every
error text bounceback keeps or shows passes :func:`redact` once, where it is first taken from the
exception, so no subscriber (terminal, dashboard, journal, metrics, logs) ever sees the secret.

The rules are deliberately broad: any user-info part of a URL is masked, whole, not only a password.
"""

from __future__ import annotations

import re

__all__ = ["SECRET_MARK", "redact"]

SECRET_MARK = "***"
"""What a masked secret reads as."""

# scheme://userinfo@ -> scheme://***@ (userinfo cannot hold "/", "@", "?", "#" or white space).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]{0,30}://)[^\s/@?#]+@")
# A query or form parameter whose name says it holds a secret: its value, up to the next separator.
_PARAM = re.compile(
    r"(?i)([?&;](?:access[_-]?token|refresh[_-]?token|id[_-]?token|token|api[_-]?key|apikey|key|secret|"
    r"client[_-]?secret|password|passwd|pass|pwd|auth|authorization|sig|signature|x-amz-signature|"
    r"x-amz-credential|session|sessionid|code)=)[^&#;\s'\"<>]*"
)
# "Authorization: Bearer abc", "password=abc", "secret: abc", "api_key=abc" outside a query string.
_PAIR = re.compile(
    r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*(?:bearer|basic|token|digest)?\s*|"
    r"(?:password|passwd|pwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*)(?!\*\*\*)[^\s,;'\"<>&]+"
)
_SCAN = 4096  # longest prefix redacted: error text beyond it is cut by every consumer anyway


def redact(text: str, limit: int | None = None) -> str:
    """``text`` with credentials masked, and cut to ``limit`` characters (with ``…``) if given.

    Redaction runs before the cut, so a secret that straddles the limit is never shown in part.

    >>> redact("GET https://ann:hunter2@api.example/v1?token=abc&page=2 failed")
    'GET https://***@api.example/v1?token=***&page=2 failed'
    >>> redact("401: Authorization: Bearer eyJhbGciOi.x.y rejected")
    '401: Authorization: Bearer *** rejected'
    >>> redact("connect to redis://:s3cret@cache:6379/0 refused")
    'connect to redis://***@cache:6379/0 refused'
    """
    if not text:
        return text
    cut = len(text) > _SCAN
    head = text[:_SCAN] if cut else text
    if "@" in head or "=" in head or ":" in head:
        head = _USERINFO.sub(r"\1" + SECRET_MARK + "@", head)
        head = _PARAM.sub(r"\1" + SECRET_MARK, head)
        head = _PAIR.sub(r"\1" + SECRET_MARK, head)
    if limit is not None and len(head) > limit:
        return head[:limit] + "…"
    return head + "…" if cut else head
