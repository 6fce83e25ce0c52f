"""One error contract for every route and failure path: OpenAI-shaped JSON with the right status.

Upstream errors are re-shaped here: an OpenAI-shaped 4xx keeps its status and body, any other 4xx body is
replaced by a BridgeX error of the same status, and upstream 5xx become 502 (503 and 504 keep theirs); the
upstream's own text is never relayed raw. Credentials in URLs are redacted before any message shows one.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import orjson

from .wire import error_body

MESSAGE_CHARS = 300  # an upstream error message quoted in ours is cut to this


def redact_url(url: str) -> str:
    """`url` with any user:password replaced by `***`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc="***@" + host))


def openai_error_message(data: bytes | dict | None) -> str | None:
    """The message of an OpenAI-shaped error body, else None."""
    if isinstance(data, bytes | bytearray):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        message = data["error"].get("message")
        return message if isinstance(message, str) else ""
    return None


def upstream_error(status: int, data: bytes | dict | None) -> tuple[int, bytes]:
    """(status, OpenAI-shaped body) to send the client for an upstream error answer."""
    message = openai_error_message(data)
    if 400 <= status < 500:
        if message is not None:
            body = data if isinstance(data, bytes) else orjson.dumps(data)
            return status, bytes(body)
        return status, error_body(status, f"the upstream answered {status}", code="upstream_error")
    out = status if status in (503, 504) else 502
    text = f"the upstream answered {status}"
    if message:
        text += ": " + message[:MESSAGE_CHARS]
    return out, error_body(out, text, code="upstream_timeout" if out == 504 else "upstream_error")


def stream_error_event(status: int, message: str) -> bytes:
    """The server-sent event that ends a failed stream (no `[DONE]` follows, so clients raise)."""
    code = "upstream_timeout" if status == 504 else "upstream_error"
    return b"data: " + error_body(status, message, code=code) + b"\n\n"
