"""uvicorn's HTTP/1.1 connections with two changes for a server that faces untrusted clients:

- a header deadline: a request whose request line and headers are not complete within `header_timeout`
  seconds (counted from when the connection opens, or from the request's first byte on a kept-alive one:
  a client that sends nothing, a slow-loris client, a line of bare CRLFs that never becomes a request)
  gets a 408 and the connection is closed; uvicorn itself waits forever;
- uvicorn's own parse errors are answered with OpenAI-shaped JSON instead of text/plain.

`server_config` builds the uvicorn config the CLI and the tests run the proxy with; `guard_uvicorn` gives
vLLM's own server (the middleware's) the same guard.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .settings import Settings
from .wire import error_body

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


# The protocol methods the guard wraps, each as guard(self, next_method, *args).


def _arm(self, cycle) -> None:
    """Start the header deadline for the request that follows `cycle` (None: the connection's first)."""
    if self._header_timer is not None and self._timed_cycle is cycle:
        return  # already running for this request
    if self._header_timer is not None:
        self._header_timer.cancel()
    self._timed_cycle = cycle
    self._header_timer = self.loop.call_later(self.header_timeout, _expire, self)


def _expire(self) -> None:
    self._header_timer = None
    transport = self.transport
    if self.cycle is self._timed_cycle and not transport.is_closing():
        message = f"the request line and headers did not arrive within {self.header_timeout:g} s"
        transport.write(_raw_response(408, b"Request Timeout", message))
        transport.close()


def _connection_made(self, next_method, transport) -> None:
    next_method(transport)
    _arm(self, None)  # counted from when the connection opens: a client that sends nothing is cut too


def _data_received(self, next_method, data: bytes) -> None:
    cycle = self.cycle
    if cycle is None or cycle.response_complete:  # bytes of a request whose headers are not complete
        _arm(self, cycle)
    next_method(data)


def _connection_lost(self, next_method, exc: Exception | None) -> None:
    if self._header_timer is not None:
        self._header_timer.cancel()
        self._header_timer = None
    next_method(exc)


def _send_400_response(self, next_method, msg: str) -> None:
    transport = self.transport
    if not transport.is_closing():
        transport.write(_raw_response(400, b"Bad Request", f"invalid HTTP request: {msg}"))
        transport.close()


GUARDS = {
    "connection_made": _connection_made,
    "data_received": _data_received,
    "connection_lost": _connection_lost,
    "send_400_response": _send_400_response,
}


class _Guard:
    """Mixed into a uvicorn protocol class (which provides transport, loop, cycle and the methods)."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _timed_cycle: Any = None

    def connection_made(self, transport) -> None:
        _connection_made(self, super().connection_made, transport)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        _data_received(self, super().data_received, data)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        _connection_lost(self, super().connection_lost, exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        _send_400_response(self, super().send_400_response, msg)  # type: ignore[misc]


def _uvicorn_protocols() -> list[type]:
    return [H11Protocol] + ([HttpToolsProtocol] if HttpToolsProtocol is not None else [])


_ORIGINALS: dict[type, dict[str, Any]] = {}  # uvicorn's own methods, kept while `guard_uvicorn` is on


def guard_uvicorn(header_timeout: float) -> None:
    """Give uvicorn's own protocol classes, in this process, the guard of `guarded_protocol`.

    For the vLLM middleware, whose server (vLLM's uvicorn) BridgeX does not configure: it is built while
    vLLM's server starts, after uvicorn chose its protocol class and before the first connection, so the
    classes are changed in place. Calling it again only changes the timeout; `unguard_uvicorn` undoes it.
    """
    for base in _uvicorn_protocols():
        if base not in _ORIGINALS:
            _ORIGINALS[base] = {name: getattr(base, name) for name in GUARDS}
            for name, guard in GUARDS.items():
                setattr(base, name, _wrapped(guard, _ORIGINALS[base][name]))
            base._header_timer = None  # type: ignore[attr-defined]
            base._timed_cycle = None  # type: ignore[attr-defined]
        base.header_timeout = header_timeout  # type: ignore[attr-defined]


def unguard_uvicorn() -> None:
    """Give uvicorn's protocol classes their own methods back (tests that mounted the middleware)."""
    for base, methods in _ORIGINALS.items():
        for name, method in methods.items():
            setattr(base, name, method)
        for name in ("header_timeout", "_header_timer", "_timed_cycle"):
            if name in base.__dict__:
                delattr(base, name)
    _ORIGINALS.clear()


def _wrapped(guard, original):
    def method(self, *args):
        return guard(self, original.__get__(self), *args)

    method.__name__ = original.__name__
    return method


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
