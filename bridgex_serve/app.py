"""The proxy: a Starlette ASGI app in front of vLLM's OpenAI server, behind the door (`door.Door`).

The door runs first for every HTTP request: the key check (every route but /health, and /ready and
/metrics when configured public), the per-request deadline (`X-BridgeX-Timeout`), the body read (size
limit, read timeout, a body cut short is never forwarded), cancellation of all work when the client
disconnects, and one error contract (OpenAI-shaped JSON for every non-2xx). Requests without a `bridgex`
field are relayed as bytes (`upstream.Upstream`); bridged ones go through `service.BridgeService`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from .door import Door, Keys, bearer, replay, send_reply
from .index import IndexLoadError
from .limits import ClientFault, Gate
from .metrics import Metrics
from .openapi import DOCUMENT
from .orchestrate import UpstreamError
from .replies import Forward, Reply, fault_reply
from .service import BridgeService
from .settings import Settings
from .upstream import Upstream
from .wire import MARKER, error_body

log = logging.getLogger("bridgex_serve")
BODY = "bridgex.body"  # the scope key under which the guard hands the read body to the routes


class Proxy:
    """State of one app: settings, the bridging service, the upstream client, metrics, the door."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.service = BridgeService(settings, self.metrics)  # raises IndexLoadError before serving
        self.upstream = Upstream(settings, self.metrics)
        self.gate = Gate(settings.max_upstream, settings.max_queue)
        public = {"/health"}
        if settings.public_ready:
            public.add("/ready")
        if settings.public_metrics:
            public.add("/metrics")
        self.door = Door(settings, self.metrics, Keys(settings.api_keys, public=public), "proxy")

    async def reply(self, send, reply: Reply) -> None:
        await self.door.reply(send, reply)


class Guard:
    """The proxy's ASGI app: the door (`door.Door`) in front of the router, which gets the body read."""

    def __init__(self, proxy: Proxy, router):
        self.proxy, self.router = proxy, router

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        await self.proxy.door(scope, receive, send, self._route)

    async def _route(self, scope, body: bytes, receive, send) -> None:
        scope[BODY] = body
        await self.router(scope, replay(body), send)


class Generation:
    """POST /v1/chat/completions and /v1/completions (a raw ASGI endpoint: the hot path)."""

    def __init__(self, proxy: Proxy, endpoint: str):
        self.proxy = proxy
        self.endpoint = endpoint
        self.label = "chat" if endpoint == "chat" else "completions"

    async def __call__(self, scope, receive, send) -> None:
        proxy = self.proxy
        proxy.metrics.request(self.label)
        body = scope[BODY]
        key = bearer(scope)
        path = scope["path"]
        async with proxy.gate.slot():
            if MARKER not in body:
                await proxy.upstream.relay("POST", path, body, key, send)
                return

            async def call(p: str, b: dict) -> dict:
                return await proxy.upstream.call_json(p, b, key)

            result = await proxy.service.generation(self.endpoint, body, call)
            if isinstance(result, Forward):
                await proxy.upstream.relay("POST", path, result.body, key, send, result.headers)
            else:
                await proxy.reply(send, result)


class Endpoint:
    """A small ASGI endpoint around an async handler(proxy, scope, send); `gated` ones take a gate slot."""

    def __init__(self, proxy: Proxy, handler, label: str, gated: bool = False):
        self.proxy, self.handler, self.label, self.gated = proxy, handler, label, gated

    async def __call__(self, scope, receive, send) -> None:
        self.proxy.metrics.request(self.label)
        if not self.gated:
            await self.handler(self.proxy, scope, send)
            return
        async with self.proxy.gate.slot():
            await self.handler(self.proxy, scope, send)


async def _models(proxy: Proxy, scope, send) -> None:
    await proxy.upstream.relay(
        "GET", "/v1/models", None, bearer(scope), send, query=scope.get("query_string", b"")
    )


async def _translate(proxy: Proxy, scope, send) -> None:
    body = scope[BODY]
    key = bearer(scope)

    async def call(p: str, b: dict) -> dict:
        return await proxy.upstream.call_json(p, b, key)

    async def models() -> dict:
        return await proxy.upstream.get_json("/v1/models", key, proxy.settings.ready_timeout)

    await proxy.reply(send, await proxy.service.translate(body, call, models))


async def _languages(proxy: Proxy, scope, send) -> None:
    await proxy.reply(send, proxy.service.languages())


async def _health(proxy: Proxy, scope, send) -> None:
    await send_reply(send, Reply(200, b'{"status":"ok"}'))


async def _ready(proxy: Proxy, scope, send) -> None:
    index = proxy.service.runtime.index
    status = {"index": index.path, "languages": len(index.languages), "upstream": proxy.upstream.shown}
    try:
        await proxy.upstream.get_json(
            "/v1/models", proxy.settings.upstream_api_key, proxy.settings.ready_timeout
        )
    except UpstreamError as exc:
        status.update(status="not ready", reason=exc.message)
        await send_reply(send, Reply(503, orjson.dumps(status)))
        return
    status["status"] = "ready"
    await send_reply(send, Reply(200, orjson.dumps(status)))


async def _metrics(proxy: Proxy, scope, send) -> None:
    await send_reply(send, Reply(200, proxy.metrics.render(), content_type=proxy.metrics.content_type))


async def _openapi(proxy: Proxy, scope, send) -> None:
    await send_reply(send, Reply(200, DOCUMENT))


async def _reload(proxy: Proxy, scope, send) -> None:
    await proxy.reply(send, await proxy.service.reload_reply())


def _lifespan(proxy: Proxy):
    """Start and close the upstream client; SIGHUP reloads the index (the old one stays on failure)."""

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
                    log.warning("bridgex: index reloaded from %s", proxy.settings.index)
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

    return lifespan


def _routes(proxy: Proxy) -> list[Route]:
    return [
        Route("/v1/chat/completions", Generation(proxy, "chat"), methods=["POST"]),
        Route("/v1/completions", Generation(proxy, "completions"), methods=["POST"]),
        Route("/v1/models", Endpoint(proxy, _models, "models", gated=True), methods=["GET"]),
        Route("/v1/translate", Endpoint(proxy, _translate, "translate", gated=True), methods=["POST"]),
        Route("/v1/languages", Endpoint(proxy, _languages, "languages"), methods=["GET"]),
        Route("/health", Endpoint(proxy, _health, "health"), methods=["GET"]),
        Route("/ready", Endpoint(proxy, _ready, "ready"), methods=["GET"]),
        Route("/metrics", Endpoint(proxy, _metrics, "metrics"), methods=["GET"]),
        Route("/admin/reload", Endpoint(proxy, _reload, "reload"), methods=["POST"]),
        Route("/openapi.json", Endpoint(proxy, _openapi, "openapi"), methods=["GET"]),
    ]


async def _not_found(request, exc):
    status = getattr(exc, "status_code", 404)
    message = "not found" if status == 404 else "method not allowed"
    return Response(
        error_body(status, f"{message}: {request.method} {request.url.path}"),
        status,
        media_type="application/json",
    )


async def _internal(request, exc):
    """Exceptions out of the routes: a `ClientFault` is its own answer, anything else a bug (500)."""
    if isinstance(exc, ClientFault):
        reply = fault_reply(exc)
        return Response(reply.body, reply.status, dict(reply.headers), media_type="application/json")
    return Response(
        error_body(500, "internal error in the proxy", code="internal_error"),
        500,
        media_type="application/json",
    )


def create_app(settings: Settings) -> Guard:
    """Build the proxy. Loads the index now: a missing or corrupt index raises `IndexLoadError`."""
    proxy = Proxy(settings)
    router = Starlette(
        routes=_routes(proxy),
        lifespan=_lifespan(proxy),
        exception_handlers={404: _not_found, 405: _not_found, Exception: _internal},
    )
    router.state.proxy = proxy
    app = Guard(proxy, router)
    app.state = router.state  # type: ignore[attr-defined]
    return app
