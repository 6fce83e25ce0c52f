"""A fault-injecting OpenAI upstream for the abuse tests: the model name picks the fault.

- "drip": 200 headers at once, then one byte every 0.2 s, forever
- "cut": a server-sent stream that stops after two events (no `[DONE]`)
- "wrongjson": 200 with a JSON object that is no completion
- "text500" / "text400": plain-text error bodies
- "slowheaders": sleeps 30 s before answering
- "hold": answers nothing until the client goes away, and records when it went (`gone`)
- anything else: a normal one-word completion ("ok") or stream
Each request is recorded in `requests` (path and model) when its body has arrived.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

NOT_A_COMPLETION = {"object": "text_completion", "result": "no choices here"}


def completion(chat: bool, n: int = 1) -> dict:
    if chat:
        choices = [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]
    else:
        choices = [{"index": i, "text": "ok", "finish_reason": "stop"} for i in range(n)]
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    return {"id": "x", "object": "x", "created": 0, "model": "m", "choices": choices, "usage": usage}


def event(chat: bool, text: str) -> bytes:
    choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
    return b"data: " + json.dumps({"id": "x", "object": "chunk", "choices": [choice]}).encode() + b"\n\n"


class FaultUpstream:
    """`faults=False`: every model answers normally, and a body that is not a JSON object gets vLLM's 400."""

    def __init__(self, faults: bool = True) -> None:
        self.faults = faults
        self.requests: list[dict] = []
        self.gone: list[tuple[str, float]] = []  # (path, time the client was seen gone)
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/completions", self.generate, methods=["POST"]),
                Route("/v1/chat/completions", self.generate, methods=["POST"]),
            ]
        )

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model"}]})

    async def generate(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            error = {"message": "not a JSON object", "type": "BadRequestError", "code": 400}
            return JSONResponse({"error": error}, 400)
        path = request.url.path
        chat = path.endswith("/chat/completions")
        model = body.get("model") if self.faults else "m"
        self.requests.append({"path": path, "model": model, "body": body})
        if model == "hold":
            while not await request.is_disconnected():
                await asyncio.sleep(0.02)
            self.gone.append((path, time.monotonic()))
            return Response(status_code=499)
        if model == "drip":

            async def drip():
                yield b"{"
                while True:
                    await asyncio.sleep(0.2)
                    yield b" "

            return StreamingResponse(drip(), media_type="application/json")
        if model == "cut":

            async def cut():
                yield event(chat, "Hello")
                yield event(chat, " wor")
                raise RuntimeError("the upstream died mid-stream")

            return StreamingResponse(cut(), media_type="text/event-stream")
        if model == "wrongjson":
            return JSONResponse(NOT_A_COMPLETION)
        if model == "text500":
            return PlainTextResponse("Traceback (most recent call last): secret internals", 500)
        if model == "text400":
            return PlainTextResponse("bad things in plain text", 400)
        if model == "slowheaders":
            await asyncio.sleep(30)
        if body.get("stream"):

            async def events():
                yield event(chat, "ok")
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        prompts = body.get("prompt")
        return JSONResponse(completion(chat, len(prompts) if isinstance(prompts, list) else 1))
