"""What a request handler hands back to a shell, with no web framework: a `Reply` (bytes or server-sent
events to send the client) or a `Forward` (send this body upstream, relay the answer unchanged), and the
error replies built from a `ClientFault` or an `UpstreamError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import upstream_error
from .limits import ClientFault
from .orchestrate import UpstreamError
from .wire import error_body

JSON = "application/json"
SSE = "text/event-stream"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON
    chunks: list[bytes] | None = None  # server-sent events, sent one by one


@dataclass
class Forward:
    """Relay this body upstream (the `bridgex` field removed) and its answer unchanged."""

    body: bytes
    headers: list[tuple[str, str]]
    timeout: float | None = None  # the client's bridgex.timeout (seconds)


def error_reply(status: int, message: str, *, param: str | None = None, code: str | None = None) -> Reply:
    return Reply(status, error_body(status, message, param=param, code=code))


def fault_reply(exc: ClientFault) -> Reply:
    return Reply(exc.status, error_body(exc.status, exc.message, param=exc.param, code=exc.code), exc.headers)


def upstream_error_reply(exc: UpstreamError) -> Reply:
    """An upstream error answer re-shaped by `errors.upstream_error`; a failure to reach it is 502/504."""
    if exc.body is not None and exc.status not in (502, 504):
        return Reply(*upstream_error(exc.status, exc.body))
    if exc.status == 504:
        return error_reply(504, exc.message, code="upstream_timeout")
    return error_reply(502, exc.message, code="upstream_error")
