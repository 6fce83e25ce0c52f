"""The proxy and the vLLM middleware under abuse: body and structure limits, bodies cut short, slow and
malformed HTTP, keys, redaction and backpressure. (What both shells share is tested once for both in
test_serve_door.py.) No timing window: tests wait for events, or for the server to close, with a generous
ceiling that only a missing guard reaches."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time

import httpx
import orjson
import pytest
from click.testing import CliRunner
from fault_upstream import FaultUpstream
from serve_support import (
    ServerThread,
    StubUpstream,
    index_path,  # noqa: F401 (fixture)
    mounted_middleware,
    running,
    stub,  # noqa: F401 (fixture)
)

from bridgex_serve.app import create_app
from bridgex_serve.cli import main
from bridgex_serve.connections import server_config
from bridgex_serve.limits import key_matches
from bridgex_serve.settings import Settings

WORD = {"task": "word", "source": "sw", "target": "he"}
GENEROUS = 30.0  # seconds: reached only when the guard under test is missing


class GuardedServer(ServerThread):
    """A ServerThread running the proxy with the CLI's uvicorn protocol (header timeout, JSON 400s)."""

    def __init__(self, app, settings: Settings, http: str):
        super().__init__(app)
        self.server.config = server_config(app, settings, http=http, host="127.0.0.1", port=self.port)


@pytest.fixture(params=["httptools", "h11"])
def guarded(request, stub, index_path):  # noqa: F811
    settings = Settings(
        index=str(index_path),
        upstream=stub.url,
        max_body_bytes=4096,
        max_bridged_bytes=2048,
        header_timeout=0.5,
        body_timeout=0.5,
        max_messages=4,
        max_content_parts=2,
        max_tokens_limit=1000,
    )
    with GuardedServer(create_app(settings), settings, request.param) as server:
        server.stub = stub
        yield server


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["error"]


def raw_exchange(port: int, data: bytes, wait: float = GENEROUS, close: bool = False) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it (or `wait` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def held_request(port: int, path: str, body: dict) -> socket.socket:
    """Send a whole POST on a raw connection and leave it open (close it to go away)."""
    data = orjson.dumps(body)
    sock = socket.create_connection(("127.0.0.1", port), timeout=GENEROUS)
    sock.sendall(
        b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (path.encode(), len(data), data)
    )
    return sock


def wait_for(condition, what: str) -> None:
    ceiling = time.monotonic() + GENEROUS
    while not condition():
        assert time.monotonic() < ceiling, f"never happened: {what}"
        time.sleep(0.01)


def chat(content="maji", **extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


# -- bounded work ------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413(guarded):
    big = chat("x" * 5000, bridgex=WORD)
    r = httpx.post(guarded.url + "/v1/chat/completions", json=big)
    assert error_of(r, 413)["code"] == "request_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(guarded.url + "/v1/chat/completions", content=chunks())
    assert error_of(r, 413) and not guarded.stub.requests


def test_a_bridged_body_has_its_own_smaller_limit_and_plain_bodies_keep_theirs(guarded):
    body = chat("maji " * 500, bridgex=WORD)  # about 2.6 kB: under the body limit, over the bridged one
    r = httpx.post(guarded.url + "/v1/chat/completions", json=body)
    assert "BRIDGEX_MAX_BRIDGED_BYTES" in error_of(r, 413)["message"]
    r = httpx.post(guarded.url + "/v1/translate", json={"q": ["maji " * 500], "target": "he", "model": "m"})
    assert error_of(r, 413)["code"] == "request_too_large"
    assert not guarded.stub.requests
    r = httpx.post(guarded.url + "/v1/chat/completions", json=chat("maji " * 500))  # no bridgex: relayed
    assert r.status_code == 200 and len(guarded.stub.requests) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(bridgex=WORD, max_tokens=2**64 - 1), "max_tokens"),
        (chat(bridgex=WORD, max_tokens="5"), "max_tokens"),
        (chat(bridgex=WORD, max_completion_tokens=1001), "max_completion_tokens"),
        ({"model": "m", "messages": [{"role": "user", "content": "a"}] * 5, "bridgex": WORD}, "messages"),
        (chat([{"type": "text", "text": "a"}] * 3, bridgex=WORD), "messages[0]"),
        (chat([{"type": "text", "text": None}], bridgex=WORD), "messages[0]"),
        ({"model": "m", "messages": [None], "bridgex": WORD}, "messages[0]"),
        ({"model": "m", "messages": "hi", "bridgex": WORD}, "messages"),
    ],
)
def test_bridged_bodies_over_the_limits_or_malformed_are_400s(guarded, body, param):
    r = httpx.post(guarded.url + "/v1/chat/completions", json=body)
    assert error_of(r, 400)["param"] == param and not guarded.stub.requests


@pytest.mark.parametrize("max_tokens", ["5", [5], {}, 0, 2**64 - 1, True])
def test_translate_rejects_a_bad_max_tokens(guarded, max_tokens):
    body = {"q": ["maji"], "source": "sw", "target": "he", "model": "m", "max_tokens": max_tokens}
    r = httpx.post(guarded.url + "/v1/translate", json=body)
    assert error_of(r, 400)["param"] == "max_tokens"


def test_a_body_that_ends_early_is_never_forwarded(guarded):
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    partial = head + b'content-length: 200\r\n\r\n{"model":'
    raw_exchange(guarded.port, partial, close=True)  # the client goes away mid-body
    out2 = raw_exchange(guarded.port, partial)  # left open: the body read times out (0.5 s)
    assert out2.startswith(b"HTTP/1.1 408") and b'"error"' in out2
    assert not guarded.stub.requests


# -- malformed and slow HTTP ------------------------------------------------------------------------------


def test_a_request_line_of_bare_crlfs_does_not_hang(guarded):
    out = raw_exchange(guarded.port, b"\r\n" * 20)  # the server answers and closes, or this waits 30 s
    assert out.startswith(b"HTTP/1.1 408") or out.startswith(b"HTTP/1.1 400")
    assert b"application/json" in out and b'"error"' in out


def test_slow_loris_headers_get_a_408(guarded):
    """A header line every 0.1 s, never the end of the headers: the 0.5 s header deadline answers 408."""
    out = b""
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=GENEROUS) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        ceiling = time.monotonic() + GENEROUS
        try:
            while not out and time.monotonic() < ceiling:
                sock.sendall(b"x-a: b\r\n")
                readable, _, _ = select.select([sock], [], [], 0.1)
                if readable:
                    out = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert out.startswith(b"HTTP/1.1 408")


def test_parse_errors_are_json(guarded):
    out = raw_exchange(guarded.port, b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400") and b"application/json" in out and b'"error"' in out
    r = httpx.get(guarded.url + "/health")  # the server is still fine, keep-alive connections too
    assert r.status_code == 200


def test_unknown_routes_and_methods_are_json(guarded):
    assert error_of(httpx.get(guarded.url + "/nope"), 404)
    assert error_of(httpx.get(guarded.url + "/v1/chat/completions"), 405)


# -- keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [("",), (" ",), ("ok", "")])
def test_empty_keys_are_refused_at_start_up(index_path, keys):  # noqa: F811
    with pytest.raises(ValueError, match="empty"):
        Settings(index=str(index_path), api_keys=keys).validate()
    args = ["--index", str(index_path)] + [a for k in keys for a in ("--api-key", k)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "API key" in result.output
    with pytest.raises(ValueError, match="BRIDGEX_API_KEYS"):
        Settings.from_env({"BRIDGEX_API_KEYS": " , "})


def test_keys_are_compared_in_full():
    assert key_matches("k1", ("k0", "k1")) and not key_matches("k", ("k1",)) and not key_matches(None, ("k",))
    assert not key_matches("", ("k",))


@pytest.fixture
def keyed(stub, index_path):  # noqa: F811
    settings = Settings(index=str(index_path), upstream=stub.url, api_keys=("k1",))
    with running(create_app(settings)) as server:
        yield server


def test_every_route_but_health_needs_the_key(keyed):
    for method, path in [
        ("GET", "/metrics"),
        ("GET", "/ready"),
        ("GET", "/v1/models"),
        ("GET", "/v1/languages"),
        ("POST", "/v1/translate"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/admin/reload"),
        ("GET", "/nope"),
    ]:
        for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Bearer k2"}):
            r = httpx.request(method, keyed.url + path, headers=headers)
            assert error_of(r, 401)["code"] == "invalid_api_key", (method, path)
    assert httpx.get(keyed.url + "/health").status_code == 200
    ok = {"authorization": "Bearer k1"}
    assert httpx.get(keyed.url + "/metrics", headers=ok).status_code == 200
    assert httpx.get(keyed.url + "/ready", headers=ok).status_code == 200


def test_metrics_and_ready_can_be_made_public(stub, index_path):  # noqa: F811
    settings = Settings(
        index=str(index_path), upstream=stub.url, api_keys=("k1",), public_metrics=True, public_ready=True
    )
    with running(create_app(settings)) as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        assert httpx.get(server.url + "/ready").status_code == 200
        assert error_of(httpx.get(server.url + "/v1/languages"), 401)


def test_the_cli_does_not_print_upstream_credentials(index_path, monkeypatch):  # noqa: F811
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    result = CliRunner().invoke(
        main, ["--index", str(index_path), "--upstream", "http://user:s3cret@127.0.0.1:9"]
    )
    assert result.exit_code == 0 and "s3cret" not in result.output and "***@127.0.0.1:9" in result.output


# -- backpressure ------------------------------------------------------------------------------------------


def test_a_full_queue_is_a_429_with_retry_after(index_path):  # noqa: F811
    """One slot, one place in the queue: two held requests fill both, a third gets 429; once the held
    clients go away the proxy serves again."""
    fault = FaultUpstream()
    with running(fault.app) as up:
        settings = Settings(index=str(index_path), upstream=up.url, max_upstream=1, max_queue=1)
        app = create_app(settings)
        gate = app.state.proxy.gate
        with running(app) as server:
            held = [held_request(server.port, "/v1/chat/completions", chat() | {"model": "hold"})]
            wait_for(lambda: fault.requests, "the first held request reached the upstream")
            held.append(held_request(server.port, "/v1/chat/completions", chat() | {"model": "hold"}))
            wait_for(lambda: gate.waiting == 1, "the second held request is queued")
            r = httpx.post(server.url + "/v1/chat/completions", json=chat(), timeout=GENEROUS)
            assert error_of(r, 429)["code"] == "rate_limit_exceeded" and r.headers["retry-after"] == "1"
            assert httpx.get(server.url + "/health").status_code == 200  # not gated
            for sock in held:
                sock.close()
            r = httpx.post(server.url + "/v1/chat/completions", json=chat(), timeout=GENEROUS)
            assert r.status_code == 200


def _ignore(fn, *args, **kw) -> None:
    with contextlib.suppress(httpx.HTTPError):
        fn(*args, **kw)


# -- the vLLM middleware deployment -----------------------------------------------------------------------


def middleware_server(
    index_path,  # noqa: F811
    monkeypatch,
    vllm_keys: list[str],
    bridgex_keys: str | None,
    upstream: StubUpstream | None = None,
):
    """The middleware over a stub, with vLLM's own key check (`vllm serve --api-key`) stacked inside it when
    `vllm_keys` are given: vLLM is installed, so a missing module fails the test instead of skipping it."""
    from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

    monkeypatch.setenv("BRIDGEX_INDEX", str(index_path))
    if bridgex_keys is None:
        monkeypatch.delenv("BRIDGEX_API_KEYS", raising=False)
    else:
        monkeypatch.setenv("BRIDGEX_API_KEYS", bridgex_keys)
    upstream = upstream or StubUpstream()
    inner = upstream.app
    if vllm_keys:
        inner = AuthenticationMiddleware(upstream.app, tokens=vllm_keys)
    return mounted_middleware(inner)


def test_middleware_bridgex_routes_accept_the_vllm_key_and_the_bridgex_key(index_path, monkeypatch):  # noqa: F811
    with middleware_server(index_path, monkeypatch, ["vkey"], "bkey") as server:
        body = {"q": ["maji"], "source": "sw", "target": "he", "model": "m"}
        for key in ("vkey", "bkey"):
            r = httpx.post(
                server.url + "/v1/translate", json=body, headers={"authorization": f"Bearer {key}"}
            )
            assert r.status_code == 200, (key, r.text)
            r = httpx.post(
                server.url + "/v1/chat/completions",
                json=chat(bridgex=WORD),
                headers={"authorization": f"Bearer {key}"},
            )
            assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "מים"
        assert error_of(httpx.post(server.url + "/v1/translate", json=body), 401)
        bad = {"authorization": "Bearer nope"}
        assert error_of(httpx.post(server.url + "/admin/reload", headers=bad), 401)
        assert (
            httpx.post(server.url + "/admin/reload", headers={"authorization": "Bearer vkey"}).status_code
            == 200
        )


def test_middleware_admin_is_closed_without_keys(index_path, monkeypatch):  # noqa: F811
    with middleware_server(index_path, monkeypatch, [], None) as server:
        error = error_of(httpx.post(server.url + "/admin/reload"), 401)
        assert "BRIDGEX_API_KEYS" in error["message"]
        assert httpx.get(server.url + "/v1/languages").status_code == 200


def test_middleware_limits_the_body(index_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BRIDGEX_MAX_BODY_BYTES", "1000")
    with middleware_server(index_path, monkeypatch, [], None) as server:
        r = httpx.post(server.url + "/v1/chat/completions", json=chat("x" * 2000, bridgex=WORD))
        assert error_of(r, 413)


def test_gate_refuses_beyond_its_queue():
    from bridgex_serve.limits import ClientFault, Gate

    async def run() -> list[str]:
        gate = Gate(1, 1)
        release = asyncio.Event()
        out: list[str] = []

        async def hold():
            async with gate.slot():
                await release.wait()
                out.append("done")

        tasks = [asyncio.create_task(hold()) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(ClientFault) as info:
            async with gate.slot():
                pass
        out.append(str(info.value.status))
        release.set()
        await asyncio.gather(*tasks)
        return out

    assert asyncio.run(run()) == ["429", "done", "done"]


def test_limit_settings_come_from_the_environment_and_are_checked():
    env = {
        "BRIDGEX_MAX_BODY_BYTES": "1000",
        "BRIDGEX_REQUEST_TIMEOUT": "7.5",
        "BRIDGEX_PUBLIC_METRICS": "1",
        "BRIDGEX_MAX_QUEUE": "0",
    }
    s = Settings.from_env(env)
    assert (s.max_body_bytes, s.request_timeout, s.public_metrics, s.max_queue) == (1000, 7.5, True, 0)
    with pytest.raises(ValueError, match="ttfb_timeout"):
        Settings.from_env({"BRIDGEX_TTFB_TIMEOUT": "0"})
    with pytest.raises(ValueError, match="BRIDGEX_MAX_BODY_BYTES"):
        Settings.from_env({"BRIDGEX_MAX_BODY_BYTES": "lots"})


def test_middleware_bridged_requests_beyond_the_queue_get_429(index_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("BRIDGEX_MAX_UPSTREAM", "1")
    monkeypatch.setenv("BRIDGEX_MAX_QUEUE", "0")
    slow_stub = StubUpstream(delay=GENEROUS)  # "slow" holds its slot until its client goes away
    with middleware_server(index_path, monkeypatch, [], None, upstream=slow_stub) as server:
        held = held_request(server.port, "/v1/chat/completions", dict(chat(bridgex=WORD), model="slow"))
        wait_for(lambda: slow_stub.requests, "the held bridged request reached the upstream")
        r = httpx.post(server.url + "/v1/chat/completions", json=chat(bridgex=WORD), timeout=GENEROUS)
        assert error_of(r, 429) and r.headers["retry-after"] == "1"
        held.close()  # the middleware cancels the held request and frees its slot
        ok = None
        ceiling = time.monotonic() + GENEROUS
        while ok != 200 and time.monotonic() < ceiling:
            ok = httpx.post(server.url + "/v1/chat/completions", json=chat(bridgex=WORD), timeout=GENEROUS)
            ok = ok.status_code
        assert ok == 200


def test_a_large_bridged_body_is_worked_on_off_the_event_loop(index_path, monkeypatch):  # noqa: F811
    """0.8 MB of text (under the bridged limit): parsing and planning, and the answer (the copy check and
    the metadata) run in worker threads, so the event loop keeps serving (done on the loop, these steps
    blocked it for seconds)."""
    from fault_upstream import completion

    from bridgex_serve import service as service_module
    from bridgex_serve.service import BridgeService

    service = BridgeService(Settings(index=str(index_path)))
    text = " ".join(["habari", "ya", "asubuhi", "rafiki"] * 40_000)
    body = orjson.dumps(chat(text, bridgex={"task": "translate", "source": "sw", "target": "he"}))
    threads: dict[str, int] = {}

    def recorded(name, fn):
        def run(*args):
            threads[name] = threading.get_ident()
            return fn(*args)

        return run

    monkeypatch.setattr(service, "_prepare", recorded("prepare", service._prepare))
    monkeypatch.setattr(service_module, "_answer", recorded("answer", service_module._answer))

    async def call(path: str, body: dict) -> dict:
        threads.setdefault("call", threading.get_ident())
        return completion(path.endswith("/chat/completions"))

    reply = asyncio.run(service.generation("chat", body, call))
    assert reply.status == 200
    assert set(threads) == {"prepare", "call", "answer"}
    assert threads["prepare"] != threads["call"] and threads["answer"] != threads["call"]
