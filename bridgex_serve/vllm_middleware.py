"""BridgeX inside vLLM's own server, with no extra hop:

    vllm serve MODEL --middleware bridgex_serve.vllm_middleware.BridgeXMiddleware


The index path comes from `BRIDGEX_INDEX` (read when vLLM builds its middleware stack, so a missing or
corrupt index stops start-up). Requests without a `bridgex` field go to vLLM untouched; bridged ones run
the same core as the proxy, whose upstream calls here are in-process ASGI calls into the wrapped vLLM app:
no network hop, no second server. Also served: `POST /v1/translate`, `GET /v1/languages` and
`POST /admin/reload` (protected by BRIDGEX_API_KEYS when set; vLLM's `--api-key` guards the rest).
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from .index import IndexLoadError
from .metrics import Metrics
from .orchestrate import UpstreamError
from .protocol import error_body
from .service import MARKER, BridgeService, Forward, Reply, bearer, error_reply, read_body, send_reply
from .settings import Settings

log = logging.getLogger("bridgex_serve.vllm")
GENERATION = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}
# Not x-request-id: the calls of one bridged request (or a whole batch) would share it, and vLLM keys its
# requests by that id.
FORWARDED_HEADERS = {b"authorization", b"user-agent"}


def _replay(body: bytes, receive):
    """A `receive` that yields `body` once, then defers to the client's (for disconnects)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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
        self.keys = frozenset(settings.api_keys)
        self.service = BridgeService(settings, _metrics())
        self._model: str | None = settings.default_model
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
            await self._generation(endpoint, scope, receive, send)
        elif path == "/v1/translate" and method == "POST":
            await self._guarded(self._translate, scope, receive, send)
        elif path == "/v1/languages" and method == "GET":
            await self._guarded(self._languages, scope, receive, send)
        elif path == "/admin/reload" and method == "POST":
            await self._guarded(self._reload, scope, receive, send)
        else:
            await self.app(scope, receive, send)

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

            try:
                await self.app(sub, receive, send)
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

    # -- endpoints ----------------------------------------------------------------------------------------
    async def _generation(self, endpoint: str, scope, receive, send) -> None:
        self.service.metrics.request(endpoint)
        body = await read_body(receive)
        if MARKER not in body:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            result = await self.service.generation(endpoint, body, self._caller(scope))
        except Exception:
            log.exception("bridgex: bridged request failed")
            result = error_reply(500, "internal error in the BridgeX middleware", code="internal_error")
        if isinstance(result, Forward):
            extra = [(k.encode(), v.encode("latin-1")) for k, v in result.headers]

            async def send_with_headers(message):
                if message["type"] == "http.response.start":
                    message = dict(message, headers=[*message.get("headers", []), *extra])
                await send(message)

            await self.app(
                _with_length(scope, len(result.body)), _replay(result.body, receive), send_with_headers
            )
            return
        await self._reply(send, result)

    async def _reply(self, send, reply: Reply) -> None:
        if reply.status >= 400:
            self.service.metrics.error(reply.status)
        await send_reply(send, reply)

    async def _guarded(self, handler, scope, receive, send) -> None:
        if self.keys and bearer(scope) not in self.keys:
            await self._reply(
                send, Reply(401, error_body(401, "invalid or missing API key", code="invalid_api_key"))
            )
            return
        try:
            await handler(scope, receive, send)
        except Exception:
            log.exception("bridgex: %s failed", scope["path"])
            await self._reply(
                send, error_reply(500, "internal error in the BridgeX middleware", code="internal_error")
            )

    async def _translate(self, scope, receive, send) -> None:
        self.service.metrics.request("translate")
        body = await read_body(receive)
        call = self._caller(scope)
        if self._model is None:
            try:
                self._model = (await call("/v1/models", None, "GET"))["data"][0]["id"]
            except (UpstreamError, KeyError, IndexError, TypeError):
                self._model = None
        await self._reply(send, await self.service.translate(body, call, self._model))

    async def _languages(self, scope, receive, send) -> None:
        self.service.metrics.request("languages")
        await self._reply(send, self.service.languages())

    async def _reload(self, scope, receive, send) -> None:
        await read_body(receive)
        await self._reply(send, await self.service.reload_reply())
