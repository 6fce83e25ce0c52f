"""The OpenAI protocol as BridgeX answers it: error bodies (built only here) and bridged responses.

Pure: dicts and bytes in, bytes out.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from .rewrite import ClientRequest, Outcome, Usage

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
