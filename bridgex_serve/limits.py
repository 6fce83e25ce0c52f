"""Bounded work for both deployments: body size and read deadlines, client disconnects, an admission gate
for upstream work (429 + Retry-After when its queue is full), and structural limits of bridged bodies.

Everything here raises `ClientFault` (an HTTP status and an OpenAI-shaped message) or `ClientGone`;
the door (`door.Door`) turns the first into a reply and stops quietly on the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .settings import Settings

# The loop time by which the current client request must be answered (None: no deadline); set by the shell,
# shortened by a client's `bridgex.timeout`, read by every upstream call.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("bridgex_deadline", default=None)
BIG_BODY = 64 * 1024  # bridged bodies from this size are parsed and planned in a worker thread
CLOSE = (("connection", "close"),)  # sent with answers given before the body was read to its end


class ClientFault(Exception):
    """Bad or unservable client input: answered with `status` and an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = list(headers)


class ClientGone(Exception):
    """The client closed the connection: nothing can be answered, nothing is forwarded."""


def content_length(scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise ClientFault(400, "Content-Length is not a number") from None
    return None


async def read_body(receive, scope, settings: Settings) -> bytes:
    """The whole request body, at most `max_body_bytes` (413), within `body_timeout` (408). A client that
    disconnects before the end raises `ClientGone`: a partial body is never returned."""
    limit = settings.max_body_bytes
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                parts.append(chunk)
                if not message.get("more_body"):
                    break
    except TimeoutError:
        raise ClientFault(
            408,
            f"the request body did not arrive within {settings.body_timeout:g} s",
            code="timeout",
            headers=CLOSE,
        ) from None
    if declared is not None and size != declared:
        raise ClientFault(400, f"the body has {size} bytes but Content-Length says {declared}")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _too_large(limit: int) -> ClientFault:
    return ClientFault(413, f"the request body is larger than {limit} bytes", code="request_too_large")


def bridged_too_large(limit: int) -> ClientFault:
    return ClientFault(
        413,
        f"a bridged request body is limited to {limit} bytes (BRIDGEX_MAX_BRIDGED_BYTES); a larger text "
        "exceeds any model context the bridge prompts must fit in: split it, or send it without bridgex",
        code="request_too_large",
    )


async def until_disconnect(receive) -> None:
    """Return when the client disconnects (call after the body is read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def cancel_on_disconnect(work: Awaitable[Any], receive) -> Any:
    """Await `work` in this task; if the client disconnects first, cancel it (and with it every upstream
    call it made, which closes those connections) and raise `ClientGone`."""
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await until_disconnect(receive)
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()


class Gate:
    """At most `slots` client requests work upstream at once, at most `queue` wait for a slot; one more
    is refused with 429 and Retry-After."""

    def __init__(self, slots: int, queue: int, retry_after: int = 1):
        self.slots, self.queue, self.retry_after = slots, queue, retry_after
        self.waiting = 0
        self._semaphore: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def slot(self):
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        if semaphore.locked():
            if self.waiting >= self.queue:
                raise ClientFault(
                    429,
                    f"the proxy is at its limit ({self.slots} requests upstream, {self.queue} waiting): "
                    "retry later",
                    code="rate_limit_exceeded",
                    headers=[("retry-after", str(self.retry_after))],
                )
            self.waiting += 1
            try:
                await semaphore.acquire()
            finally:
                self.waiting -= 1
        else:
            await semaphore.acquire()
        try:
            yield
        finally:
            semaphore.release()


def key_matches(given: str | None, keys: Iterable[str]) -> bool:
    """Constant-time comparison against every configured key (no early exit on a match)."""
    if given is None:
        return False
    raw = given.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(raw, key.encode())
    return found


def positive_int(value: Any, name: str, limit: int) -> int | None:
    """`value` as a token count in [1, limit], None when absent; else a 400 naming `name`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientFault(400, f"{name} must be a positive integer, got {value!r}", param=name)
    if value > limit:
        raise ClientFault(400, f"{name} is {value}; at most {limit}", param=name)
    return value


def check_generation(endpoint: str, body: dict, settings: Settings) -> None:
    """Shape and size limits of a bridged chat or completion body that the rewriter relies on."""
    for name in ("max_tokens", "max_completion_tokens"):
        positive_int(body.get(name), name, settings.max_tokens_limit)
    if endpoint != "chat":
        return
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ClientFault(400, "messages must be a non-empty list", param="messages")
    if len(messages) > settings.max_messages:
        raise ClientFault(
            400, f"messages has {len(messages)} items; at most {settings.max_messages}", param="messages"
        )
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ClientFault(400, f"{param} must be an object with a string role", param=param)
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ClientFault(400, f"{param}.content must be a string or a list of parts", param=param)
        if len(content) > settings.max_content_parts:
            raise ClientFault(
                400,
                f"{param}.content has {len(content)} parts; at most {settings.max_content_parts}",
                param=param,
            )
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise ClientFault(400, f"{param}.content[{j}] must be an object", param=param)
            if part.get("type", "text") == "text" and not isinstance(part.get("text"), str):
                raise ClientFault(400, f"{param}.content[{j}].text must be a string", param=param)


async def off_loop(fn: Callable[..., Any], size: int, *args: Any) -> Any:
    """`fn(*args)` in a worker thread when the body is big (so the event loop keeps serving), else inline."""
    if size >= BIG_BODY:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)
