"""Request handling shared by the proxy and the vLLM plugin, independent of how the upstream is reached.

A shell hands over the raw body and a `call(path, body) -> dict` coroutine and gets back either a `Reply`
(bytes or server-sent events to send the client) or a `Forward` (send this body upstream and relay the
answer unchanged). Bodies without a `bridgex` field never reach this module: the shells forward their
bytes as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from .detect import make_detector
from .engines import prompt_style_for
from .index import BridgeIndex, IndexLoadError, load_index
from .limits import DEADLINE, ClientFault, bridged_too_large, check_generation, off_loop, positive_int
from .metrics import Metrics
from .options import TRANSLATE_OPTIONS, TRANSLATE_TASKS, Options, RequestError, parse_options
from .orchestrate import CallUpstream, UpstreamError, bounded, run_plans
from .outcome import Outcome, distilled_summary, headers_for
from .plan import CHAT_STYLE_TASKS, Passthrough, Plan, plan_request
from .replies import SSE, Forward, Reply, error_reply, fault_reply, upstream_error_reply
from .settings import Settings
from .wire import ClientRequest, Usage, client_request, json_body, json_object, response_body, sse_chunks


@dataclass(frozen=True)
class Runtime:
    """Everything a request reads from the index, swapped as one reference on reload."""

    index: BridgeIndex
    low_resource: frozenset[str]
    detect: object  # Callable[[str], str | None]
    # task (word | translate) → completion | chat: how word and sentence translations are asked upstream
    prompt_styles: dict[str, str] = field(
        default_factory=lambda: dict.fromkeys(CHAT_STYLE_TASKS, "completion")
    )

    @classmethod
    def load(
        cls, path: str, low_resource: tuple[str, ...] | None = None, prompt_style: str = "auto"
    ) -> Runtime:
        """Blocking: read the index and build the detector (call from a thread on reload). `prompt_style`
        "auto" takes each task's style from the family entry (`engines.prompt_style_for`) of the index's
        model architecture; "completion" or "chat" applies to every task."""
        index = load_index(path)
        if prompt_style == "auto":
            styles = prompt_style_for(index.provenance.get("architecture"))
        else:
            styles = dict.fromkeys(CHAT_STYLE_TASKS, prompt_style)
        if low_resource is not None:
            unknown = [c for c in low_resource if not index.has_language(c)]
            if unknown:
                from .index import IndexLoadError

                raise IndexLoadError(
                    f"low-resource language {unknown[0]!r} is not in {path} "
                    f"({', '.join(index.language_codes())})"
                )
            chosen = frozenset(low_resource)
        else:
            chosen = index.low_resource()
        return cls(index, chosen, make_detector(index.language_codes()), styles)


def _answer(req: ClientRequest, outcome: Outcome, usage: Usage) -> Reply:
    """The 200 reply to a bridged chat or completion request (plain or server-sent events)."""
    headers = headers_for(outcome.metadata())
    if req.stream:
        return Reply(200, headers=headers, content_type=SSE, chunks=sse_chunks(req, outcome, usage))
    return Reply(200, response_body(req, outcome, usage), headers)


def _translations(model: str, outcomes: list[Outcome], usage: Usage) -> Reply:
    """The 200 reply to `/v1/translate`, in the order of the texts."""
    translations = [
        {
            "text": o.answer,
            "source": o.plan.source,
            "target": o.plan.target,
            "bridge": o.plan.bridge,
            "mode": o.plan.mode,
            "bridge_text": o.bridge_text,
            "bridge_copied": o.bridge_copied,
            "route": o.route,
            "decision_source": o.plan.decision_source,
            "fallback": o.fallback,
            "fallback_reason": o.fallback_reason,
            "shots": len(o.plan.demos),
            "calls": o.calls,
            **({"policy": o.plan.policy.summary()} if o.plan.policy is not None else {}),
            **({"distilled": distilled_summary(o.plan)} if o.plan.distilled is not None else {}),
        }
        for o in outcomes
    ]
    return Reply(200, json_body({"model": model, "translations": translations, "usage": usage.as_dict()}))


def shorten_deadline(seconds: float | None) -> None:
    """Make the current request's deadline at most `seconds` from now."""
    if seconds is None:
        return
    when = asyncio.get_running_loop().time() + seconds
    current = DEADLINE.get()
    DEADLINE.set(when if current is None else min(current, when))


class BridgeService:
    """Parses bridged requests, plans them against the in-memory index and runs them upstream."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, runtime: Runtime | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.runtime = runtime or Runtime.load(settings.index, settings.low_resource, settings.prompt_style)
        self._semaphore: asyncio.Semaphore | None = None
        self._model: str | None = settings.default_model
        self._reload_lock: asyncio.Lock | None = None

    @property
    def semaphore(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.settings.max_concurrency)
        return self._semaphore

    # -- reload ------------------------------------------------------------------------------------------
    async def reload(self) -> Runtime:
        """Load the index again in a thread and swap it in; on failure the old one stays (and this raises)."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            try:
                runtime = await asyncio.to_thread(
                    Runtime.load, self.settings.index, self.settings.low_resource, self.settings.prompt_style
                )
            except Exception:
                self.metrics.reloads.labels("failed").inc()
                raise
            self.runtime = runtime
            self.metrics.reloads.labels("ok").inc()
            return runtime

    async def reload_reply(self) -> Reply:
        """`POST /admin/reload` for both shells: 200 with the index's languages, or 422 (old index kept)."""
        try:
            runtime = await self.reload()
        except IndexLoadError as exc:
            return error_reply(
                422, f"reload failed, the previous index stays loaded: {exc}", code="index_reload_failed"
            )
        body = {
            "status": "reloaded",
            "index": runtime.index.path,
            "languages": runtime.index.language_codes(),
        }
        return Reply(200, orjson.dumps(body))

    # -- chat / completions ------------------------------------------------------------------------------
    async def generation(self, endpoint: str, raw: bytes, call: CallUpstream) -> Reply | Forward:
        """`endpoint` is "chat" or "completions"; `raw` contains the `bridgex` marker. Parsing and planning
        run in a worker thread for big bodies, so the event loop keeps serving."""
        try:
            prepared = await off_loop(self._prepare, len(raw), endpoint, raw)
        except (ClientFault, RequestError) as exc:
            return _client_error(exc)
        if isinstance(prepared, Forward):
            shorten_deadline(prepared.timeout)
            return prepared
        plan, req, options = prepared
        shorten_deadline(options.timeout)
        outcomes, usage_or_error = await self._run([plan], req, call, options.copy_fallback)
        if isinstance(usage_or_error, UpstreamError):
            return upstream_error_reply(usage_or_error)
        # the metadata compares the (possibly long) source text with the bridge rendering: CPU work
        return await off_loop(_answer, len(raw), req, outcomes[0], usage_or_error)

    def _prepare(self, endpoint: str, raw: bytes) -> Forward | tuple[Plan, ClientRequest, Options]:
        """Blocking: parse, check the limits and plan one bridged request (raises `ClientFault` or
        `RequestError` on bad input)."""
        body = json_object(raw)
        if "bridgex" not in body:
            return Forward(raw, [])
        if len(raw) > self.settings.max_bridged_bytes:
            raise bridged_too_large(self.settings.max_bridged_bytes)
        check_generation(endpoint, body, self.settings)
        options = parse_options(body.pop("bridgex"))
        req, text = client_request(endpoint, body)
        plan = self._plan(self.runtime, options, text, req)
        if isinstance(plan, Passthrough):
            self.metrics.passthrough(plan.label or "other")
            return Forward(orjson.dumps(body), plan.headers(), options.timeout)
        return plan, req, options

    def _plan(
        self, runtime: Runtime, options: Options, text: str, req: ClientRequest, force: bool = False
    ) -> Plan | Passthrough:
        """`plan_request` against the runtime's index and detector and the server's routing setting."""
        return plan_request(
            options,
            text,
            index=runtime.index,
            low_resource=runtime.low_resource,
            detect=runtime.detect,
            answer_tokens=req.max_tokens,
            force=force,
            uncalibrated=self.settings.uncalibrated,
            prompt_style=runtime.prompt_styles,
            distilled=self.settings.distilled,
        )

    async def _run(
        self, plans: list[Plan], req: ClientRequest, call: CallUpstream, copy_fallback: bool | None = None
    ) -> tuple[list[Outcome], Usage | UpstreamError]:
        """Count the plans, run them upstream (with the copy fallback when the request's option, else the
        server's setting, enables it), count the fallbacks."""
        if copy_fallback is None:
            copy_fallback = self.settings.copy_fallback
        for plan in plans:
            self.metrics.rewrite(plan.task, plan.bridge, plan.mode, plan.decision_source)
        try:
            outcomes, usage = await run_plans(
                plans,
                req,
                bounded(call, self.semaphore),
                max_batch=self.settings.max_batch,
                copy_fallback=copy_fallback,
            )
        except UpstreamError as exc:
            return [], exc
        for o in outcomes:
            if o.fallback:
                self.metrics.copy_fallback(o.plan.task, o.plan.bridge, o.plan.mode, o.fallback_reason or "")
        return outcomes, usage

    # -- batch translation -------------------------------------------------------------------------------
    async def default_model(self, models: Callable[[], Awaitable[dict]]) -> str | None:
        """The model of `/v1/translate` bodies that name none: the setting, else the first of the upstream's
        `/v1/models` answer (`models()`), asked until one answer names one."""
        if self._model is None:
            with contextlib.suppress(UpstreamError, KeyError, IndexError, TypeError):
                self._model = (await models())["data"][0]["id"]
        return self._model

    async def translate(self, raw: bytes, call: CallUpstream, models: Callable[[], Awaitable[dict]]) -> Reply:
        """`{"q": [...], "source": "auto"|code, "target": code, "model"?, "task"?, "route"?, "bridge"?,
        "mode"?, "shots"?, "copy_fallback"?, "timeout"?}` → `{"translations": [{"text", "source", "bridge",
        ...}], "usage"}` in the order of `q`. `task` is `word`, `translate` or `auto` (a single word is
        `word`)."""
        default_model = await self.default_model(models) if b'"model"' not in raw else None
        try:
            options, plans, req = await off_loop(self._prepare_texts, len(raw), raw, default_model)
        except (ClientFault, RequestError) as exc:
            return _client_error(exc)
        shorten_deadline(options.timeout)
        outcomes, usage_or_error = await self._run(plans, req, call, options.copy_fallback)
        if isinstance(usage_or_error, UpstreamError):
            return upstream_error_reply(usage_or_error)
        return await off_loop(_translations, len(raw), req.model, outcomes, usage_or_error)

    def _prepare_texts(
        self, raw: bytes, default_model: str | None
    ) -> tuple[Options, list[Plan], ClientRequest]:
        """Blocking: parse and check a `/v1/translate` body; its options and one forced plan per text."""
        if len(raw) > self.settings.max_bridged_bytes:
            raise bridged_too_large(self.settings.max_bridged_bytes)
        body = json_object(raw)
        texts = _texts(body.get("q"), self.settings.max_texts)
        model = body.get("model") or default_model
        if not isinstance(model, str) or not model:
            raise ClientFault(400, "model is required (no default model is known)", param="model")
        positive_int(body.get("max_tokens"), "max_tokens", self.settings.max_tokens_limit)
        options = parse_options({k: body[k] for k in TRANSLATE_OPTIONS if k in body})
        if options.task not in TRANSLATE_TASKS:
            raise RequestError(f"task {options.task!r} is not one of {', '.join(TRANSLATE_TASKS)}", "task")
        if options.target is None:
            raise RequestError("target is required", "target")
        sampling = {k: body[k] for k in ("temperature", "seed") if k in body}
        req = ClientRequest("completions", model, sampling, body.get("max_tokens"))
        runtime = self.runtime
        plans = [self._plan(runtime, options, text, req, force=True) for text in texts]
        assert all(isinstance(p, Plan) for p in plans)  # forced plans never pass through
        return options, plans, req  # type: ignore[return-value]

    def languages(self) -> Reply:
        index = self.runtime.index
        return Reply(
            200,
            json_body(
                {
                    "languages": [
                        {
                            "code": lang.code,
                            "name": lang.prompt_name,
                            "english_name": lang.english_name,
                            "low_resource": lang.code in self.runtime.low_resource,
                        }
                        for lang in index.languages.values()
                    ],
                    "pairs": index.pairs(),
                    "prompt_style": self.runtime.prompt_styles,
                }
            ),
        )


def _client_error(exc: ClientFault | RequestError) -> Reply:
    """The 4xx reply to bad client input."""
    if isinstance(exc, ClientFault):
        return fault_reply(exc)
    return error_reply(400, exc.message, param=exc.param, code=exc.code)


def _texts(value: object, limit: int) -> list[str]:
    """`/v1/translate`'s `q`: a string or a non-empty list of at most `limit` strings."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ClientFault(400, "q must be a string or a non-empty list of strings", param="q")
    if len(texts) > limit:
        raise ClientFault(400, f"q has {len(texts)} texts; at most {limit} per request", param="q")
    return texts
