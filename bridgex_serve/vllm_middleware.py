"""BridgeX inside vLLM's own server, with no extra hop:

    vllm serve MODEL --middleware bridgex_serve.vllm_middleware.BridgeXMiddleware


The index path comes from `BRIDGEX_INDEX` (read when vLLM builds its middleware stack, so a missing or
corrupt index stops start-up). Chat and completion requests and the BridgeX routes pass the same door as
the proxy's (`door.Door`); then requests without a `bridgex` field go to vLLM unchanged, and bridged ones
run the same core as the proxy, whose upstream calls here are in-process ASGI calls into the wrapped vLLM app:
no network hop, no second server. Also served: `POST /v1/translate`, `GET /v1/languages` and
`POST /admin/reload`.

Keys: bridged requests and the BridgeX routes accept a key of BRIDGEX_API_KEYS or one of vLLM's own
(`--api-key` / VLLM_API_KEY, compared by hash as vLLM does); with no key of either kind they are open,
except `/admin/*`, which is closed until a key is configured. The in-process calls of an authenticated
request go to the app inside vLLM's key check. Body size, body read timeout, deadlines (including
`X-BridgeX-Timeout`), disconnects and error shapes are the door's, with the same settings as the proxy;
the header deadline is given to vLLM's own uvicorn (`connections.guard_uvicorn`).
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from .connections import guard_uvicorn
from .door import Door, Keys, replay
from .index import IndexLoadError
from .limits import DEADLINE, Gate
from .metrics import Metrics
from .orchestrate import UpstreamError
from .replies import Forward, Reply
from .service import BridgeService
from .settings import Settings
from .wire import MARKER

log = logging.getLogger("bridgex_serve.vllm")
GENERATION = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
# Not x-request-id: the calls of one bridged request (or a whole batch) would share it, and vLLM keys its
# requests by that id.
FORWARDED_HEADERS = {b"authorization", b"user-agent"}


def _with_length(scope, length: int) -> dict:
    headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
    headers.append((b"content-length", str(length).encode()))
    return dict(scope, headers=headers)


def _metrics() -> Metrics:
    from prometheus_client import REGISTRY

    try:
        return Metrics(REGISTRY)  # shows up on vLLM's /metrics
    except ValueError:  # already registered (a second app in this process)
        return Metrics()


def _vllm_key_check(app) -> tuple[list[bytes], object | None]:
    """vLLM's key hashes and the app inside its key check, found down the middleware chain, or ([], None)."""
    seen = 0
    while app is not None and seen < 32:
        tokens = getattr(app, "api_tokens", None)
        if isinstance(tokens, list) and all(isinstance(t, bytes) for t in tokens):
            return tokens, getattr(app, "app", None)
        app = getattr(app, "app", None)
        seen += 1
    return [], None


class BridgeXMiddleware:
    """ASGI middleware wrapping vLLM's OpenAI app."""

    def __init__(self, app, index: str | None = None):
        self.app = app
        settings = Settings.from_env(index=index)
        if not settings.index:
            raise IndexLoadError(
                "BRIDGEX_INDEX is not set: name the DuckDB index the BridgeX middleware serves"
            )
        self.settings = settings
        vllm_hashes, inner = _vllm_key_check(app)
        self.inner = inner if inner is not None else app  # where authenticated in-process calls go
        self.service = BridgeService(settings, _metrics())
        keys = Keys(settings.api_keys, vllm_hashes, admin_needs_a_key=True)
        self.door = Door(
            settings, self.service.metrics, keys, "BridgeX middleware", key_after_body=GENERATION
        )
        # vLLM's uvicorn, whose connections this process serves: the header deadline from the first byte
        # a connection may send (`connections.guard_uvicorn`)
        guard_uvicorn(settings.header_timeout)
        self.gate = Gate(settings.max_upstream, settings.max_queue)  # bridged requests; vLLM queues the rest
        log.info(
            "BridgeX middleware: index %s (%d languages)",
            settings.index,
            len(self.service.runtime.index.languages),
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        endpoint = GENERATION.get(path)
        if endpoint is not None and method == "POST":

            async def handler(scope, body, receive, send) -> None:
                await self._generation(endpoint, body, scope, receive, send)

        elif path == "/v1/translate" and method == "POST":
            handler = self._translate
        elif path == "/v1/languages" and method == "GET":
            handler = self._languages
        elif path == "/admin/reload" and method == "POST":
            handler = self._reload
        else:
            await self.app(scope, receive, send)
            return
        await self.door(scope, receive, send, handler)

    # -- in-process upstream ------------------------------------------------------------------------------
    def _caller(self, scope):
        base_headers = [(k, v) for k, v in scope["headers"] if k in FORWARDED_HEADERS]

        async def call(path: str, body: dict | None, method: str = "POST") -> dict:
            data = orjson.dumps(body) if body is not None else b""
            headers = [
                *base_headers,
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ]
            sub = dict(
                scope, path=path, raw_path=path.encode(), method=method, query_string=b"", headers=headers
            )
            finished = asyncio.Event()
            delivered = False
            status = 500
            chunks: list[bytes] = []

            async def receive():
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": data, "more_body": False}
                await finished.wait()
                return {"type": "http.disconnect"}

            async def send(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            deadline = DEADLINE.get()
            try:
                async with asyncio.timeout_at(deadline):
                    await self.inner(sub, receive, send)
            except TimeoutError:
                raise UpstreamError(
                    504, message="vLLM did not answer before the request's deadline"
                ) from None
            finally:
                finished.set()
            raw = b"".join(chunks)
            if status >= 400:
                raise UpstreamError(status, raw)
            try:
                return orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise UpstreamError(502, message="vLLM answered with invalid JSON") from None

        return call

    # -- endpoints (behind the door: keys, deadline, body, disconnects and errors are its) -------------
    async def _generation(self, endpoint: str, body: bytes, scope, receive, send) -> None:
        self.service.metrics.request(endpoint)
        if MARKER not in body:
            await self.app(scope, replay(body, receive), send)
            return
        async with self.gate.slot():
            result = await self.service.generation(endpoint, body, self._caller(scope))
        if isinstance(result, Forward):
            extra = [(k.encode(), v.encode("latin-1")) for k, v in result.headers]

            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    message = dict(message, headers=[*message.get("headers", []), *extra])
                await send(message)

            await self.inner(  # the client's key was checked above (a BridgeX or a vLLM key)
                _with_length(scope, len(result.body)), replay(result.body, receive), send_with_headers
            )
            return
        await self._reply(send, result)

    async def _reply(self, send, reply: Reply) -> None:
        await self.door.reply(send, reply)

    async def _translate(self, scope, body: bytes, receive, send) -> None:
        self.service.metrics.request("translate")
        call = self._caller(scope)

        async def models() -> dict:
            return await call("/v1/models", None, "GET")

        async with self.gate.slot():
            reply = await self.service.translate(body, call, models)
        await self._reply(send, reply)

    async def _languages(self, scope, body: bytes, receive, send) -> None:
        self.service.metrics.request("languages")
        await self._reply(send, self.service.languages())

    async def _reload(self, scope, body: bytes, receive, send) -> None:
        await self._reply(send, await self.service.reload_reply())
