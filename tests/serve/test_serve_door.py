"""The front door (`bridgex_serve.door`), one suite for both shells: every test runs against the proxy (its
uvicorn protocols from `connections.server_config`) and against the vLLM middleware (uvicorn's own
protocols, guarded in place as inside `vllm serve`), each over a fault-injecting upstream, through a real
HTTP client or raw sockets. A limit added to the door is tested here once and shows up in both."""

from __future__ import annotations

import logging
import socket

import httpx
import orjson
import pytest
from fault_upstream import FaultUpstream
from serve_support import (  # noqa: F401 (fixture)
    GENEROUS,
    ServerThread,
    index_path,
    mounted_middleware,
    running,
    wait_closed,
    with_nesting,
)

from bridgex_serve.app import create_app
from bridgex_serve.connections import server_config
from bridgex_serve.settings import Settings
from bridgex_serve.wire import MAX_DEPTH

WORD = {"task": "word", "source": "sw", "target": "he"}
HEADER_TIMEOUT = 0.5
# The same pair asked three ways: through the index's bridge, forced direct, and a pair the index has no
# bridge for (de → ja), whose body is relayed without the `bridgex` field.
ROUTES = {
    "bridged": WORD,
    "direct": dict(WORD, route="direct"),
    "unbridged pair": {"task": "word", "source": "de", "target": "ja"},
}


class Shell:
    def __init__(self, name: str, server: ServerThread, upstream: FaultUpstream):
        self.name, self.url, self.port, self.upstream = name, server.url, server.port, upstream


@pytest.fixture(params=["proxy", "middleware"])
def shell(request, index_path):  # noqa: F811
    upstream = FaultUpstream()
    if request.param == "middleware":
        env = {
            "BRIDGEX_INDEX": str(index_path),
            "BRIDGEX_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "BRIDGEX_MAX_BODY_BYTES": "4096",
        }
        with mounted_middleware(upstream.app, env) as server:
            yield Shell("middleware", server, upstream)
        return
    with running(upstream.app) as up:
        settings = Settings(
            index=str(index_path), upstream=up.url, header_timeout=HEADER_TIMEOUT, max_body_bytes=4096
        )
        server = ServerThread(create_app(settings))
        server.server.config = server_config(
            server.server.config.app, settings, host="127.0.0.1", port=server.port
        )
        with server:
            yield Shell("proxy", server, upstream)


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["error"]


def chat(model: str = "m", content: str = "maji", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def post(shell: Shell, path: str, content: bytes, **kw) -> httpx.Response:
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(shell.url + path, content=content, headers=headers, timeout=GENEROUS, **kw)


# -- bodies nested too deep --------------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_body_nested_too_deep_is_a_400_on_every_route(shell, route, caplog):
    caplog.set_level(logging.WARNING, logger="bridgex_serve")
    r = post(shell, "/v1/chat/completions", with_nesting(chat(bridgex=ROUTES[route]), 300))
    error = error_of(r, 400)
    assert error["code"] == "nesting_too_deep" and "nested too deep" in error["message"]
    assert not shell.upstream.requests
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text


def test_a_batch_translation_nested_too_deep_is_a_400(shell):
    body = {"q": ["maji"], "source": "sw", "target": "he", "model": "m"}
    r = post(shell, "/v1/translate", with_nesting(body, 300))
    assert error_of(r, 400)["code"] == "nesting_too_deep" and not shell.upstream.requests


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_body_at_the_nesting_limit_is_served(shell, route):
    r = post(shell, "/v1/chat/completions", with_nesting(chat(bridgex=ROUTES[route]), MAX_DEPTH))
    assert r.status_code == 200, r.text
    assert shell.upstream.requests
    if route == "unbridged pair":  # relayed without `bridgex`, the nested field intact
        sent = shell.upstream.requests[0]["body"]
        assert "bridgex" not in sent and sent["extra"] == orjson.loads(
            with_nesting({}, MAX_DEPTH)[:-1].split(b":", 1)[1]
        )


# -- connections: the header deadline counts from when a connection opens ---------------------------------


def test_connections_that_send_nothing_are_closed_at_the_header_deadline(shell):
    socks = [socket.create_connection(("127.0.0.1", shell.port), timeout=GENEROUS) for _ in range(200)]
    closed = wait_closed(socks)
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} idle connections still open"
    assert all(data == b"" or data.startswith(b"HTTP/1.1 408") for data in closed.values())
    r = httpx.get(shell.url + "/v1/languages", timeout=GENEROUS)  # the server still serves
    assert r.status_code == 200


def test_headers_that_never_end_get_a_408(shell):
    sock = socket.create_connection(("127.0.0.1", shell.port), timeout=GENEROUS)
    sock.sendall(b"GET /v1/languages HTTP/1.1\r\nhost: x\r\n")  # no blank line: the headers never end
    closed = wait_closed([sock])
    assert closed and closed[sock].startswith(b"HTTP/1.1 408") and b'"error"' in closed[sock]


def test_a_kept_alive_connection_still_serves_its_next_request(shell):
    with httpx.Client(timeout=GENEROUS) as client:
        for _ in range(3):
            assert client.get(shell.url + "/v1/languages").status_code == 200


# -- deadlines ---------------------------------------------------------------------------------------------


def test_the_x_bridgex_timeout_header_shortens_the_deadline(shell):
    """The upstream drips forever and the server's own deadline is 600 s: only the header ends it."""
    r = post(
        shell,
        "/v1/chat/completions",
        orjson.dumps(chat("drip", bridgex=WORD)),
        headers={"x-bridgex-timeout": "0.5"},
    )
    assert error_of(r, 504)["code"] == "upstream_timeout"


def test_bridgex_timeout_in_the_body_shortens_the_deadline(shell):
    r = post(shell, "/v1/chat/completions", orjson.dumps(chat("drip", bridgex=dict(WORD, timeout=0.5))))
    assert error_of(r, 504)["code"] == "upstream_timeout"


@pytest.mark.parametrize("value", ["x", "0", "-1", "86401", "nan"])
def test_a_malformed_x_bridgex_timeout_is_a_400(shell, value):
    r = post(
        shell, "/v1/chat/completions", orjson.dumps(chat(bridgex=WORD)), headers={"x-bridgex-timeout": value}
    )
    assert error_of(r, 400)["param"] == "timeout" and not shell.upstream.requests


@pytest.mark.parametrize("value", [-1, 0, "5", True, 86401])
def test_a_malformed_bridgex_timeout_is_a_400(shell, value):
    r = post(shell, "/v1/chat/completions", orjson.dumps(chat(bridgex=dict(WORD, timeout=value))))
    assert error_of(r, 400)["param"] == "bridgex.timeout" and not shell.upstream.requests


# -- bodies ------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413(shell):
    r = post(shell, "/v1/chat/completions", orjson.dumps(chat("x" * 5000, bridgex=WORD)))
    assert error_of(r, 413)["code"] == "request_too_large" and not shell.upstream.requests


def test_a_body_shorter_than_its_content_length_is_never_forwarded(shell):
    sock = socket.create_connection(("127.0.0.1", shell.port), timeout=GENEROUS)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b'content-length: 200\r\n\r\n{"model":'
    )
    sock.shutdown(socket.SHUT_WR)
    wait_closed([sock])
    r = httpx.get(shell.url + "/v1/languages", timeout=GENEROUS)
    assert r.status_code == 200 and not shell.upstream.requests


def test_bad_bridgex_options_are_400s_naming_the_option(shell):
    r = post(shell, "/v1/chat/completions", orjson.dumps(chat(bridgex=dict(WORD, shots=99))))
    assert error_of(r, 400)["param"] == "bridgex.shots" and not shell.upstream.requests


def test_the_deadline_holds_for_requests_the_server_only_relays(shell):
    """A plain request (no `bridgex`) to an upstream that sleeps 30 s before its head: a 504 at the
    client's 0.5 s deadline in both shells (the middleware relays it into vLLM's own app)."""
    r = post(
        shell, "/v1/chat/completions", orjson.dumps(chat("slowheaders")), headers={"x-bridgex-timeout": "0.5"}
    )
    assert error_of(r, 504)["code"] == "upstream_timeout"


@pytest.fixture(params=["proxy", "middleware"])
def keyed_shell(request, index_path):  # noqa: F811
    """Each shell with the BridgeX key "k1"."""
    upstream = FaultUpstream()
    if request.param == "middleware":
        env = {"BRIDGEX_INDEX": str(index_path), "BRIDGEX_API_KEYS": "k1"}
        with mounted_middleware(upstream.app, env) as server:
            yield Shell("middleware", server, upstream)
        return
    with running(upstream.app) as up:
        settings = Settings(index=str(index_path), upstream=up.url, api_keys=("k1",))
        with running(create_app(settings)) as server:
            yield Shell("proxy", server, upstream)


@pytest.mark.parametrize("path", ["/v1/translate", "/v1/chat/completions", "/admin/reload"])
def test_bridgex_routes_need_the_key(keyed_shell, path):
    body = (
        chat(bridgex=WORD) if path.endswith("completions") else {"q": ["maji"], "target": "he", "model": "m"}
    )
    for headers in ({}, {"authorization": "Bearer k2"}, {"authorization": "Bearer"}):
        r = post(keyed_shell, path, orjson.dumps(body), headers=headers)
        assert error_of(r, 401)["code"] == "invalid_api_key" and r.headers["www-authenticate"] == "Bearer"
    assert not keyed_shell.upstream.requests
    r = post(keyed_shell, path, orjson.dumps(body), headers={"authorization": "Bearer k1"})
    assert r.status_code == 200, r.text
