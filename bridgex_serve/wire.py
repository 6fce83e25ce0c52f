"""The OpenAI protocol as BridgeX reads and answers it: the client body's parts a bridged request needs
(`ClientRequest`), token usage, error bodies (built only here) and bridged responses.

Pure: dicts and bytes in, bytes out. Wire shapes only: no prompt or routing logic (an `Outcome` is read
through its `answer`, `finish_reason` and `metadata()`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from .options import RequestError

if TYPE_CHECKING:
    from .outcome import Outcome

MARKER = b'"bridgex"'  # a body without these bytes carries no `bridgex` field: relayed as it is
# Deepest nesting of a JSON body BridgeX parses (the body itself is level 1). Chat bodies need a handful of
# levels and tool schemas a few dozen; orjson serialises at most 254, so a deeper body could be read but
# not forwarded again.
MAX_DEPTH = 128
# Client sampling parameters copied onto every upstream call of a bridged request.
SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "user",
)


@dataclass(frozen=True)
class ClientRequest:
    """The parts of the client's body the bridged calls need."""

    endpoint: str  # "chat" | "completions"
    model: str
    sampling: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    messages: tuple[dict, ...] = ()  # chat history, the last user turn included
    stream: bool = False
    include_usage: bool = False


def json_object(raw: bytes) -> dict:
    """The request body as a JSON object at most `MAX_DEPTH` levels deep, else a `RequestError` saying why.
    The one place BridgeX parses a client body."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise RequestError(_too_deep(), code="nesting_too_deep") from None
        raise RequestError(f"the request body is not valid JSON: {exc}", code=None) from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code=None)
    # the depth cannot exceed the number of opening brackets: most bodies skip the walk
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(body, MAX_DEPTH):
        raise RequestError(_too_deep(), code="nesting_too_deep")
    return body


def _too_deep() -> str:
    return f"the request body is nested too deep: at most {MAX_DEPTH} levels of objects and arrays"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (`value` itself is level 1)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def client_request(endpoint: str, body: dict) -> tuple[ClientRequest, str]:
    """Validate a parsed chat/completions body and return it with the input text."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model must be a non-empty string", "model")
    n = body.get("n", 1)
    if n not in (1, None):
        raise RequestError("bridged requests support n=1 only", "n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError(f"max_tokens must be a positive integer, got {max_tokens!r}", "max_tokens")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise RequestError("stream must be a boolean", "stream")
    stream_options = body.get("stream_options") or {}
    include_usage = bool(isinstance(stream_options, dict) and stream_options.get("include_usage"))
    sampling = {k: body[k] for k in SAMPLING_KEYS if body.get(k) is not None}
    if endpoint == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise RequestError("messages must be a non-empty list of objects", "messages")
        text = last_user_text(messages)
        req = ClientRequest("chat", model, sampling, max_tokens, tuple(messages), stream, include_usage)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError(
                "a bridged completion takes one prompt string (use /v1/translate for many texts)", "prompt"
            )
        text = prompt
        req = ClientRequest("completions", model, sampling, max_tokens, (), stream, include_usage)
    return req, text


def last_user_text(messages: Sequence[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                ]
                return "\n".join(parts)
            raise RequestError("the last user message has no text content", "messages")
    raise RequestError("messages contain no user turn", "messages")


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as OpenAI and vLLM send it."""
    return orjson.dumps(
        {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status, "server_error"),
                "param": param,
                "code": code or status,
            }
        }
    )


def _ids(chat: bool) -> tuple[str, int]:
    return ("chatcmpl-bx-" if chat else "cmpl-bx-") + uuid.uuid4().hex[:24], int(time.time())


def response_body(req: ClientRequest, outcome: Outcome, usage: Usage) -> bytes:
    """A non-streaming chat completion or completion carrying only the final answer."""
    meta = outcome.metadata()
    chat = req.endpoint == "chat"
    rid, created = _ids(chat)
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": outcome.answer},
            "logprobs": None,
            "finish_reason": outcome.finish_reason,
        }
        obj = "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": outcome.answer,
            "logprobs": None,
            "finish_reason": outcome.finish_reason,
        }
        obj = "text_completion"
    return orjson.dumps(
        {
            "id": rid,
            "object": obj,
            "created": created,
            "model": req.model,
            "choices": [choice],
            "usage": usage.as_dict(),
            "bridgex": meta,
        }
    )


def sse_chunks(req: ClientRequest, outcome: Outcome, usage: Usage) -> list[bytes]:
    """The same answer as server-sent events: content, finish, optional usage chunk, `[DONE]`."""
    meta = outcome.metadata()
    chat = req.endpoint == "chat"
    rid, created = _ids(chat)
    obj = "chat.completion.chunk" if chat else "text_completion"
    base = {"id": rid, "object": obj, "created": created, "model": req.model}

    def choice(text: str | None, finish: str | None) -> dict:
        if chat:
            delta = {} if text is None else {"role": "assistant", "content": text}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    events = [
        dict(base, choices=[choice(outcome.answer, None)], bridgex=meta),
        dict(base, choices=[choice(None, outcome.finish_reason)]),
    ]
    if req.include_usage:
        events.append(dict(base, choices=[], usage=usage.as_dict()))
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def json_body(obj: Any) -> bytes:
    return orjson.dumps(obj)
