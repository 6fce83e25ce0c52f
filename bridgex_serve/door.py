"""The front door both shells mount: one raw-ASGI guard for every request BridgeX answers.

`Door` runs the key check (`Keys`), sets the request's deadline (the setting, or less through the
`X-BridgeX-Timeout` header) and stops the work behind it that outlives the deadline, reads the body (size
limit, read timeout; a body cut short is never passed on), cancels all work when the client disconnects,
and answers every failure in the OpenAI error shape (a `ClientFault` is its own answer, anything else a
logged 500). The proxy (`app`) puts it in front of its router; the vLLM middleware in front of the BridgeX
routes and of chat and completion requests. The shells only adapt I/O: what runs behind the door is theirs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable

from .limits import DEADLINE, ClientFault, ClientGone, cancel_on_disconnect, key_matches, read_body
from .metrics import Metrics
from .options import MAX_TIMEOUT
from .replies import Reply, error_reply, fault_reply
from .settings import Settings
from .wire import MARKER

log = logging.getLogger("bridgex_serve")
TIMEOUT_HEADER = b"x-bridgex-timeout"
GRACE = 0.5  # seconds past the deadline before the door itself stops the work behind it
# What runs behind the door: (scope, the body already read, the client's receive, send).
Inner = Callable[[dict, bytes, Callable, Callable], Awaitable[None]]


def bearer(scope) -> str | None:
    """The client's key: the `Authorization` header without its `Bearer ` prefix, or None."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text[:7].lower() == "bearer " else text.strip()
    return None


async def send_reply(send, reply: Reply) -> None:
    """Send a `Reply` as one ASGI response (a body with its length, or server-sent events)."""
    headers = [(b"content-type", reply.content_type.encode())]
    headers += [(k.encode(), v.encode("latin-1")) for k, v in reply.headers]
    if reply.chunks is None:
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
        return
    headers.append((b"cache-control", b"no-cache"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    for chunk in reply.chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def replay(body: bytes, receive=None):
    """A `receive` that yields `body` once, then defers to the client's `receive` (for disconnects), or
    with none waits forever (the door watches disconnects)."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if receive is None:
            await asyncio.Event().wait()
        return await receive()

    return again


def header_deadline(scope, limit: float) -> float:
    """The request's deadline in seconds: `limit`, or less through the X-BridgeX-Timeout header."""
    for key, value in scope.get("headers", ()):
        if key == TIMEOUT_HEADER:
            try:
                seconds = float(value)
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= MAX_TIMEOUT:
                raise ClientFault(
                    400, f"X-BridgeX-Timeout must be seconds in (0, {MAX_TIMEOUT:g}]", param="timeout"
                )
            return min(limit, seconds)
    return limit


class Keys:
    """Who may pass: a BridgeX key (compared in constant time) or one of vLLM's (compared by hash, as vLLM
    does); `public` paths need none. With no key of either kind everyone passes, except `/admin/*` when
    `admin_needs_a_key`."""

    def __init__(
        self,
        keys: Iterable[str] = (),
        vllm_hashes: Iterable[bytes] = (),
        public: Collection[str] = (),
        admin_needs_a_key: bool = False,
    ):
        self.keys, self.vllm_hashes = tuple(keys), tuple(vllm_hashes)
        self.public = frozenset(public)
        self.admin_needs_a_key = admin_needs_a_key

    @property
    def configured(self) -> bool:
        return bool(self.keys or self.vllm_hashes)

    def accepts(self, scope) -> bool:
        path = scope["path"]
        if path in self.public:
            return True
        if not self.configured:
            return not (self.admin_needs_a_key and path.startswith("/admin/"))
        given = bearer(scope)
        if given is None:
            return False
        found = key_matches(given, self.keys)
        digest = hashlib.sha256(given.encode()).digest()
        for token in self.vllm_hashes:
            found |= hmac.compare_digest(digest, token)
        return found

    def refusal(self) -> ClientFault:
        message = "invalid or missing API key"
        if not self.configured:
            message = "admin routes are closed until BRIDGEX_API_KEYS or vLLM's --api-key is set"
        return ClientFault(401, message, code="invalid_api_key", headers=[("www-authenticate", "Bearer")])


class Door:
    """The guard around `inner`. `key_after_body` paths (the middleware's chat and completions) are checked
    once the body is read, and only when it carries `bridgex`: vLLM checks the rest itself."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        keys: Keys,
        who: str,
        key_after_body: Collection[str] = (),
    ):
        self.settings, self.metrics, self.keys, self.who = settings, metrics, keys, who
        self.key_after_body = frozenset(key_after_body)

    async def __call__(self, scope, receive, send, inner: Inner) -> None:
        started = False

        async def tracked(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            later = scope["path"] in self.key_after_body
            if not later and not self.keys.accepts(scope):
                raise self.keys.refusal()
            seconds = header_deadline(scope, self.settings.request_timeout)
            deadline = asyncio.get_running_loop().time() + seconds
            DEADLINE.set(deadline)
            body = await read_body(receive, scope, self.settings)
            if later and MARKER in body and not self.keys.accepts(scope):
                raise self.keys.refusal()
            # the upstream calls behind the door end at the deadline themselves; this ends whatever does not
            # (the middleware's plain requests into vLLM) a little later
            async with asyncio.timeout_at(deadline + GRACE):
                await cancel_on_disconnect(inner(scope, body, receive, tracked), receive)
        except TimeoutError:
            if not started:
                message = f"the request did not finish within its deadline ({seconds:g} s)"
                await self.reply(send, error_reply(504, message, code="upstream_timeout"))
        except ClientGone:
            self.metrics.error(499)
        except ClientFault as exc:
            if not started:
                await self.reply(send, fault_reply(exc))
        except Exception:  # a bug, not bad input: log it, answer JSON without a traceback
            log.exception("bridgex: %s %s failed", scope["method"], scope["path"])
            if not started:
                await self.reply(
                    send, error_reply(500, f"internal error in the {self.who}", code="internal_error")
                )

    async def reply(self, send, reply: Reply) -> None:
        """Send `reply`, counting an error status."""
        if reply.status >= 400:
            self.metrics.error(reply.status)
        await send_reply(send, reply)
