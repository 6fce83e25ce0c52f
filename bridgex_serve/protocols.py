"""uvicorn's HTTP/1.1 protocols with two changes for a server that faces untrusted clients:

- a header read timeout: bytes of a request whose request line and headers are not complete within
  `header_timeout` seconds (a slow-loris client, or a line of bare CRLFs that never becomes a request) get
  a 408 and the connection is closed; uvicorn itself waits forever;
- uvicorn's own parse errors are answered with OpenAI-shaped JSON instead of text/plain.

`server_config` builds the uvicorn config the CLI and the tests run the proxy with.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .protocol import error_body
from .settings import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools not installed
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _raw_response(status: int, reason: bytes, message: str) -> bytes:
    body = error_body(status, message, code="bad_request" if status == 400 else "timeout")
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, reason, len(body))
        + body
    )


class _Guard:
    """Mixed into a uvicorn protocol class (which provides transport, loop, cycle and data_received)."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _timed_cycle: Any = None

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle  # type: ignore[attr-defined]
        idle = cycle is None or cycle.response_complete
        if idle and self._header_timer is None:
            self._timed_cycle = cycle
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)  # type: ignore[attr-defined]
        super().data_received(data)  # type: ignore[misc]

    def _header_timeout(self) -> None:
        self._header_timer = None
        transport = self.transport  # type: ignore[attr-defined]
        if self.cycle is self._timed_cycle and not transport.is_closing():  # type: ignore[attr-defined]
            message = f"the request line and headers did not arrive within {self.header_timeout:g} s"
            transport.write(_raw_response(408, b"Request Timeout", message))
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing():
            transport.write(_raw_response(400, b"Bad Request", f"invalid HTTP request: {msg}"))
            transport.close()


def guarded_protocol(header_timeout: float, http: str = "auto") -> type:
    """A uvicorn HTTP protocol class with the header timeout and JSON parse errors."""
    base = H11Protocol
    if http in ("auto", "httptools") and HttpToolsProtocol is not None:
        base = HttpToolsProtocol
    return type(f"Guarded{base.__name__}", (_Guard, base), {"header_timeout": header_timeout})


def server_config(app, settings: Settings, *, http: str = "auto", **kw: Any) -> uvicorn.Config:
    """The uvicorn config of the proxy: guarded protocol, no access log, keep-alive and lifespan on."""
    return uvicorn.Config(
        app,
        host=kw.pop("host", settings.host),
        port=kw.pop("port", settings.port),
        http=guarded_protocol(settings.header_timeout, http),
        lifespan="on",
        access_log=False,
        log_level=kw.pop("log_level", "warning"),
        **kw,
    )
