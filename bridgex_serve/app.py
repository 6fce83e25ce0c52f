"""The proxy: a Starlette ASGI app in front of vLLM's OpenAI server, behind a raw-ASGI guard.

The guard (`Guard`) runs first for every HTTP request: the key check (every route but /health, and
/ready and /metrics when configured public), the per-request deadline, the body read (size limit, read
timeout, a body cut short is never forwarded), cancellation of all work when the client disconnects, and
one error contract (OpenAI-shaped JSON for every non-2xx). Requests without a `bridgex` field are relayed
as bytes (`upstream.Upstream`); bridged ones go through `service.BridgeService`.
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

from .index import IndexLoadError
from .limits import DEADLINE, ClientFault, ClientGone, Gate, cancel_on_disconnect, key_matches, read_body
from .metrics import Metrics
from .openapi import DOCUMENT
from .orchestrate import UpstreamError
from .protocol import error_body
from .service import MARKER, BridgeService, Forward, Reply, bearer, error_reply, fault_reply, send_reply
from .settings import Settings
from .upstream import Upstream

log = logging.getLogger("bridgex_serve")
BODY = "bridgex.body"  # the scope key under which the guard hands the read body to the routes
TIMEOUT_HEADER = b"x-bridgex-timeout"


class Proxy:
    """State of one app: settings, the bridging service, the upstream client, metrics."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.service = BridgeService(settings, self.metrics)  # raises IndexLoadError before serving
        self.upstream = Upstream(settings, self.metrics)
        self.keys = tuple(settings.api_keys)
        self.gate = Gate(settings.max_upstream, settings.max_queue)
        self._model: str | None = settings.default_model
        self.public = {"/health"}
        if settings.public_ready:
            self.public.add("/ready")
        if settings.public_metrics:
            self.public.add("/metrics")

    def authorized(self, scope) -> bool:
        return not self.keys or scope["path"] in self.public or key_matches(bearer(scope), self.keys)

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
                models = await self.upstream.get_json("/v1/models", key, self.settings.ready_timeout)
                self._model = models["data"][0]["id"]
        return self._model


class Guard:
    """Raw ASGI around the router: keys, deadline, body, disconnects and the error contract."""

    def __init__(self, proxy: Proxy, router):
        self.proxy, self.router = proxy, router

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        proxy = self.proxy
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            if not proxy.authorized(scope):
                await proxy.deny(send)
                return
            DEADLINE.set(asyncio.get_running_loop().time() + self.timeout(scope))
            body = await read_body(receive, scope, proxy.settings)
            scope[BODY] = body
            await cancel_on_disconnect(self.router(scope, _body_once(body), tracked), receive)
        except ClientGone:
            proxy.metrics.error(499)
        except ClientFault as exc:
            if not started:
                await proxy.reply(send, fault_reply(exc))
        except Exception:  # a bug, not bad input: log it, answer JSON without a traceback
            log.exception("bridgex: %s %s failed", scope["method"], scope["path"])
            if not started:
                await proxy.reply(
                    send, error_reply(500, "internal error in the proxy", code="internal_error")
                )

    def timeout(self, scope) -> float:
        """The request's deadline in seconds: the setting, or less via the X-BridgeX-Timeout header."""
        limit = self.proxy.settings.request_timeout
        for key, value in scope.get("headers", ()):
            if key == TIMEOUT_HEADER:
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = -1.0
                if not 0 < seconds <= 86400:
                    raise ClientFault(400, "X-BridgeX-Timeout must be seconds in (0, 86400]", param="timeout")
                return min(limit, seconds)
        return limit


def _body_once(body: bytes):
    """A `receive` for the routes: the body already read, then nothing (the guard watches disconnects)."""
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    return receive


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

    model = proxy.settings.default_model
    if b'"model"' not in body:
        model = await proxy.default_model(key)
    await proxy.reply(send, await proxy.service.translate(body, call, model))


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


def create_app(settings: Settings) -> Guard:
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
        Route("/v1/models", Endpoint(proxy, _models, "models", gated=True), methods=["GET"]),
        Route("/v1/translate", Endpoint(proxy, _translate, "translate", gated=True), methods=["POST"]),
        Route("/v1/languages", Endpoint(proxy, _languages, "languages"), methods=["GET"]),
        Route("/health", Endpoint(proxy, _health, "health"), methods=["GET"]),
        Route("/ready", Endpoint(proxy, _ready, "ready"), methods=["GET"]),
        Route("/metrics", Endpoint(proxy, _metrics, "metrics"), methods=["GET"]),
        Route("/admin/reload", Endpoint(proxy, _reload, "reload"), methods=["POST"]),
        Route("/openapi.json", Endpoint(proxy, _openapi, "openapi"), methods=["GET"]),
    ]

    async def internal(request, exc):
        """Exceptions out of the routes: a `ClientFault` is its own answer, anything else a bug (500)."""
        if isinstance(exc, ClientFault):
            reply = fault_reply(exc)
            return Response(reply.body, reply.status, dict(reply.headers), media_type="application/json")
        return Response(
            error_body(500, "internal error in the proxy", code="internal_error"),
            500,
            media_type="application/json",
        )

    router = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found, Exception: internal},
    )
    router.state.proxy = proxy
    app = Guard(proxy, router)
    app.state = router.state  # type: ignore[attr-defined]
    return app
