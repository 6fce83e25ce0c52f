"""The proxy: a Starlette ASGI app in front of vLLM's OpenAI server.

Requests without a `bridgex` field are relayed as bytes (no JSON parsing, streaming relayed chunk by
chunk); bridged ones go through `service.BridgeService`. One pooled aiohttp session talks to the upstream:
measured on this 2-core machine against a loopback stub, httpx.AsyncClient reached ~470 requests/s and
aiohttp ~6,500–13,900, so the relay uses aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from .index import IndexLoadError
from .metrics import Metrics
from .orchestrate import UpstreamError
from .protocol import error_body
from .service import MARKER, BridgeService, Forward, Reply, bearer, error_reply, read_body, send_reply
from .settings import Settings

log = logging.getLogger("bridgex_serve")
HOP_HEADERS = {
    b"content-length",
    b"transfer-encoding",
    b"connection",
    b"keep-alive",
    b"content-encoding",
    b"date",
    b"server",
}


class Upstream:
    """The pooled client to vLLM: byte relay for passthrough, JSON calls for bridged steps."""

    def __init__(self, settings: Settings, metrics: Metrics):
        base = settings.upstream.rstrip("/")
        self.base = base[:-3] if base.endswith("/v1") else base
        self.settings = settings
        self.metrics = metrics
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=60, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.settings.connect_timeout, sock_read=self.settings.upstream_timeout
            ),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def headers(self, client_key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        key = self.settings.upstream_api_key
        if key is None and not self.settings.api_keys:
            key = client_key  # transparent proxy: the client's key is the upstream's
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    def error(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, asyncio.TimeoutError | TimeoutError):
            return UpstreamError(504, message=f"the upstream {self.base} did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(502, message=f"the upstream {self.base} refused the connection")
        return UpstreamError(502, message=f"the upstream {self.base} failed: {type(exc).__name__}")

    async def call_json(self, path: str, body: dict, client_key: str | None) -> dict:
        assert self.session is not None
        start = time.perf_counter()
        try:
            async with self.session.post(
                self.base + path, data=orjson.dumps(body), headers=self.headers(client_key)
            ) as resp:
                data = await resp.read()
                self.metrics.latency(path, time.perf_counter() - start)
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            raise self.error(exc) from None
        if status >= 400:
            raise UpstreamError(status, data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, message="the upstream answered with invalid JSON") from None

    async def relay(
        self,
        method: str,
        path: str,
        body: bytes | None,
        client_key: str | None,
        send,
        extra: Iterable[tuple[str, str]] = (),
        query: bytes = b"",
    ) -> int:
        """Send the request upstream and the answer to the client unchanged; returns the status sent."""
        assert self.session is not None
        url = self.base + path + (("?" + query.decode("latin-1")) if query else "")
        started = False
        start = time.perf_counter()
        try:
            async with self.session.request(method, url, data=body, headers=self.headers(client_key)) as resp:
                self.metrics.latency(path, time.perf_counter() - start)
                headers = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in HOP_HEADERS]
                headers += [(k.encode(), v.encode("latin-1")) for k, v in extra]
                if resp.content_type == "text/event-stream":
                    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
                    started = True
                    async for chunk in resp.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                else:
                    data = await resp.read()
                    headers.append((b"content-length", str(len(data)).encode()))
                    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
                    await send({"type": "http.response.body", "body": data})
                return resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            if started:  # mid-stream: the status is gone; end the body
                with contextlib.suppress(Exception):
                    await send({"type": "http.response.body", "body": b""})
                return 502
            err = self.error(exc)
            self.metrics.error(err.status)
            await send_reply(
                send,
                error_reply(
                    err.status,
                    err.message,
                    code="upstream_timeout" if err.status == 504 else "upstream_error",
                ),
            )
            return err.status


class Proxy:
    """State of one app: settings, the bridging service, the upstream client, metrics."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.service = BridgeService(settings, self.metrics)  # raises IndexLoadError before serving
        self.upstream = Upstream(settings, self.metrics)
        self.keys = frozenset(settings.api_keys)
        self._model: str | None = settings.default_model

    def authorized(self, scope) -> bool:
        return not self.keys or bearer(scope) in self.keys

    async def deny(self, send) -> None:
        self.metrics.error(401)
        await send_reply(
            send,
            Reply(
                401,
                error_body(401, "invalid or missing API key", code="invalid_api_key"),
                [("www-authenticate", "Bearer")],
            ),
        )

    def client_key(self, scope) -> str | None:
        return bearer(scope)

    async def reply(self, send, reply: Reply) -> None:
        if reply.status >= 400:
            self.metrics.error(reply.status)
        await send_reply(send, reply)

    async def default_model(self, key: str | None) -> str | None:
        if self._model is None:
            with contextlib.suppress(UpstreamError, KeyError, IndexError, TypeError):
                models = await self._get_json("/v1/models", key)
                self._model = models["data"][0]["id"]
        return self._model

    async def _get_json(self, path: str, key: str | None) -> dict:
        assert self.upstream.session is not None
        try:
            async with self.upstream.session.get(
                self.upstream.base + path,
                headers=self.upstream.headers(key),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                if resp.status >= 400:
                    raise UpstreamError(resp.status, await resp.read())
                return await resp.json(loads=orjson.loads)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError) as exc:
            raise self.upstream.error(exc) from None


class Generation:
    """POST /v1/chat/completions and /v1/completions (a raw ASGI endpoint: the hot path)."""

    def __init__(self, proxy: Proxy, endpoint: str):
        self.proxy = proxy
        self.endpoint = endpoint
        self.label = "chat" if endpoint == "chat" else "completions"

    async def __call__(self, scope, receive, send) -> None:
        proxy = self.proxy
        proxy.metrics.request(self.label)
        if not proxy.authorized(scope):
            await proxy.deny(send)
            return
        body = await read_body(receive)
        key = bearer(scope)
        path = scope["path"]
        if MARKER not in body:
            await proxy.upstream.relay("POST", path, body, key, send)
            return

        async def call(p: str, b: dict) -> dict:
            return await proxy.upstream.call_json(p, b, key)

        try:
            result = await proxy.service.generation(self.endpoint, body, call)
        except Exception:  # a bug, not bad input: log it, answer JSON without a traceback
            log.exception("bridgex: bridged request failed")
            await proxy.reply(
                send, error_reply(500, "internal error in the bridging proxy", code="internal_error")
            )
            return
        if isinstance(result, Forward):
            await proxy.upstream.relay("POST", path, result.body, key, send, result.headers)
        else:
            await proxy.reply(send, result)


class Endpoint:
    """A small ASGI endpoint around an async handler(proxy, scope, receive, send)."""

    def __init__(self, proxy: Proxy, handler, label: str, auth: bool = True):
        self.proxy, self.handler, self.label, self.auth = proxy, handler, label, auth

    async def __call__(self, scope, receive, send) -> None:
        self.proxy.metrics.request(self.label)
        if self.auth and not self.proxy.authorized(scope):
            await self.proxy.deny(send)
            return
        try:
            await self.handler(self.proxy, scope, receive, send)
        except Exception:
            log.exception("bridgex: %s failed", self.label)
            await self.proxy.reply(
                send, error_reply(500, f"internal error in {self.label}", code="internal_error")
            )


async def _models(proxy: Proxy, scope, receive, send) -> None:
    await proxy.upstream.relay(
        "GET", "/v1/models", None, bearer(scope), send, query=scope.get("query_string", b"")
    )


async def _translate(proxy: Proxy, scope, receive, send) -> None:
    body = await read_body(receive)
    key = bearer(scope)

    async def call(p: str, b: dict) -> dict:
        return await proxy.upstream.call_json(p, b, key)

    model = proxy.settings.default_model
    if b'"model"' not in body:
        model = await proxy.default_model(key)
    await proxy.reply(send, await proxy.service.translate(body, call, model))


async def _languages(proxy: Proxy, scope, receive, send) -> None:
    await proxy.reply(send, proxy.service.languages())


async def _health(proxy: Proxy, scope, receive, send) -> None:
    await send_reply(send, Reply(200, b'{"status":"ok"}'))


async def _ready(proxy: Proxy, scope, receive, send) -> None:
    index = proxy.service.runtime.index
    status = {"index": index.path, "languages": len(index.languages), "upstream": proxy.upstream.base}
    try:
        await proxy._get_json("/v1/models", proxy.settings.upstream_api_key)
    except UpstreamError as exc:
        status.update(status="not ready", reason=exc.message)
        await send_reply(send, Reply(503, orjson.dumps(status)))
        return
    status["status"] = "ready"
    await send_reply(send, Reply(200, orjson.dumps(status)))


async def _metrics(proxy: Proxy, scope, receive, send) -> None:
    await send_reply(send, Reply(200, proxy.metrics.render(), content_type=proxy.metrics.content_type))


async def _reload(proxy: Proxy, scope, receive, send) -> None:
    await read_body(receive)
    await proxy.reply(send, await proxy.service.reload_reply())


def create_app(settings: Settings) -> Starlette:
    """Build the proxy. Loads the index now: a missing or corrupt index raises `IndexLoadError`."""
    proxy = Proxy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await proxy.upstream.start()
        loop = asyncio.get_running_loop()
        hup = False
        tasks: set[asyncio.Task] = set()

        def on_hup() -> None:
            async def run() -> None:
                try:
                    await proxy.service.reload()
                    log.warning("bridgex: index reloaded from %s", settings.index)
                except IndexLoadError as exc:
                    log.error("bridgex: reload failed, keeping the previous index: %s", exc)

            task = loop.create_task(run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
            hup = True
        try:
            yield
        finally:
            if hup:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signal.SIGHUP)
            await proxy.upstream.close()

    async def not_found(request, exc):
        from starlette.responses import Response

        status = getattr(exc, "status_code", 404)
        message = "not found" if status == 404 else "method not allowed"
        return Response(
            error_body(status, f"{message}: {request.method} {request.url.path}"),
            status,
            media_type="application/json",
        )

    routes = [
        Route("/v1/chat/completions", Generation(proxy, "chat"), methods=["POST"]),
        Route("/v1/completions", Generation(proxy, "completions"), methods=["POST"]),
        Route("/v1/models", Endpoint(proxy, _models, "models"), methods=["GET"]),
        Route("/v1/translate", Endpoint(proxy, _translate, "translate"), methods=["POST"]),
        Route("/v1/languages", Endpoint(proxy, _languages, "languages"), methods=["GET"]),
        Route("/health", Endpoint(proxy, _health, "health", auth=False), methods=["GET"]),
        Route("/ready", Endpoint(proxy, _ready, "ready", auth=False), methods=["GET"]),
        Route("/metrics", Endpoint(proxy, _metrics, "metrics", auth=False), methods=["GET"]),
        Route("/admin/reload", Endpoint(proxy, _reload, "reload"), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    app.state.proxy = proxy
    return app
