"""The rewrite core: a client's request options → a bridging plan → upstream request bodies → final answer.

Pure: no I/O, no web framework, no database. The index and the language detector come in as arguments
(anything with the few methods `plan_request` calls), so the proxy and the vLLM plugin share this module.

Prompt format (method §6), one line per chain, the model's answer always opened by `:"` (one Gemma token):

    {S}:"{w}"→{B}:"{b}"→{T}:"{t}"        word (BLI) and sentence translation
    Question:"{q}"                      qa only: the question comes first so one call can answer it
    {S}:"{p}"→{B}:"{b}"→{T} answer:"{a}"
    {S}:"{x}"→{B}:"{b}"→{T} reply:"{a}"   chat through the completions endpoint

`two-step` asks for the bridge rendering (stop at `"` or newline) and then for the answer with the rendering
in the prompt. `chain` asks once and lets the model write `b"→{T}:"t`; if it stops before the answer (no
demonstrations, or a model that ignores the format) the answer is asked for by a continuation call whose
prompt extends the first one, so the prefix cache serves it.

Routing (which bridge, or none): an explicit `bridgex.bridge` wins; else a calibrated decision stored in the
index for the pair (`routing_decisions`); else, for uncalibrated pairs, the HSIC rank-1 bridge or the direct
route (the `uncalibrated` setting). The direct route of a `word` request is the prompt `{S}:"w"→{T}:"`.

Copy fallback (word and translate): when the bridge rendering is the source itself, or the answer is the
source or the bridge rendering (compared after `normalise_word`), the answer is asked for again by the direct
route, with the same demonstrations minus the bridge (`direct_plan`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bridgex_index.words import normalise_word

TASKS = ("auto", "word", "translate", "qa", "chat")
MODES = ("chain", "two-step")
DEFAULT_MODE = "chain"
# Chain mode needs demonstrations (a base model never continued a zero-shot chain to the target, and did in
# 99.9% of cases with three); word and sentence translation get three by default in both modes. qa and chat
# get none: word pairs in front of a passage or a conversation teach little.
DEFAULT_SHOTS = {"word": 3, "translate": 3, "qa": 0, "chat": 0}
MAX_SHOTS = 16
# Default answer budgets (tokens) when the client gives no max_tokens.
DEFAULT_ANSWER_TOKENS = {"word": 16, "translate": 128, "qa": 128, "chat": 128}
WORD_BRIDGE_TOKENS = 16
ARROW = "→"
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
OPTION_KEYS = ("task", "source", "target", "bridge", "route", "mode", "shots", "passage", "copy_fallback")
# `route`: `auto` follows the server's policy (calibrated decision, low-resource gate, `uncalibrated`);
# `direct` forces the direct route; `hsic` takes the index's HSIC rank-1 bridge, ignoring calibrated
# decisions and the low-resource gate. An explicit `bridge` is its own route.
ROUTES = ("auto", "direct", "hsic")
# Where the route of a request came from (metadata `decision_source`).
DECISION_SOURCES = ("client", "calibrated", "hsic", "default")
UNCALIBRATED = ("hsic", "direct")  # what an uncalibrated pair gets: the HSIC rank-1 bridge, or direct
COPY_FALLBACK_TASKS = ("word", "translate")  # qa and chat answers are not translations of the input


class RequestError(ValueError):
    """A client error: becomes an OpenAI-shaped 400 naming `param`."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# ---------------------------------------------------------------------------------------------------------
# Options and plans


@dataclass(frozen=True)
class Options:
    """The client's `bridgex` field, validated. `None` means "decide for me"."""

    task: str = "auto"
    source: str | None = None
    target: str | None = None
    bridge: str | None = None
    mode: str | None = None
    shots: int | None = None
    passage: str | None = None
    route: str = "auto"
    copy_fallback: bool | None = None  # None: the server's setting


def _opt_str(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"bridgex.{key} must be a non-empty string, got {value!r}", f"bridgex.{key}")
    return value.strip()


def parse_options(raw: Any) -> Options:
    """Validate the client's `bridgex` object (a dict; `{}` and `None` mean all defaults)."""
    if raw is None:
        return Options()
    if not isinstance(raw, dict):
        raise RequestError(f"bridgex must be an object, got {type(raw).__name__}", "bridgex")
    unknown = sorted(set(raw) - set(OPTION_KEYS))
    if unknown:
        raise RequestError(
            f"unknown bridgex option {unknown[0]!r}; expected one of {', '.join(OPTION_KEYS)}", "bridgex"
        )
    task = _opt_str(raw, "task") or "auto"
    if task not in TASKS:
        raise RequestError(f"bridgex.task {task!r} is not one of {', '.join(TASKS)}", "bridgex.task")
    mode = _opt_str(raw, "mode")
    if mode == "two_step":
        mode = "two-step"
    if mode is not None and mode not in MODES:
        raise RequestError(f"bridgex.mode {mode!r} is not one of {', '.join(MODES)}", "bridgex.mode")
    shots = raw.get("shots")
    if shots is not None and (
        isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= MAX_SHOTS
    ):
        raise RequestError(f"bridgex.shots must be an integer 0..{MAX_SHOTS}, got {shots!r}", "bridgex.shots")
    codes = {}
    for key in ("source", "target", "bridge"):
        value = _opt_str(raw, key)
        codes[key] = value.lower() if value is not None else None
    if codes["source"] == "auto":
        codes["source"] = None
    passage = raw.get("passage")
    if passage is not None and not isinstance(passage, str):
        raise RequestError("bridgex.passage must be a string", "bridgex.passage")
    route = _opt_str(raw, "route") or "auto"
    if route not in ROUTES:
        raise RequestError(f"bridgex.route {route!r} is not one of {', '.join(ROUTES)}", "bridgex.route")
    if route != "auto" and codes["bridge"] is not None:
        raise RequestError(
            f"bridgex.bridge and bridgex.route {route!r} contradict each other; give one", "bridgex.route"
        )
    copy_fallback = raw.get("copy_fallback")
    if copy_fallback is not None and not isinstance(copy_fallback, bool):
        raise RequestError(
            f"bridgex.copy_fallback must be true or false, got {copy_fallback!r}", "bridgex.copy_fallback"
        )
    return Options(
        task=task,
        mode=mode,
        shots=shots,
        passage=passage,
        route=route,
        copy_fallback=copy_fallback,
        **codes,
    )


class IndexView(Protocol):
    """What planning needs from the index (`bridgex_serve.index.BridgeIndex` provides it)."""

    def has_language(self, code: str) -> bool: ...
    def prompt_name(self, code: str) -> str: ...
    def language_codes(self) -> list[str]: ...
    def best_bridge(self, source: str, target: str) -> tuple[str, float] | None: ...
    def bridge_probability(self, source: str, target: str, bridge: str) -> float | None: ...
    def decision(self, source: str, target: str) -> CalibratedRoute | None: ...
    def demonstrations(
        self, langs: tuple[str, ...], k: int, exclude: str | None = None
    ) -> tuple[tuple[str, ...], ...]: ...


@dataclass(frozen=True)
class CalibratedRoute:
    """A stored routing decision for one (source, target) pair (`routing_decisions` in the index)."""

    source: str
    target: str
    decision: str  # "direct" or a bridge code
    direct_accuracy: float | None = None
    bridge_accuracy: float | None = None
    n: int | None = None  # paired held-out words
    gain: float | None = None  # bridge_accuracy - direct_accuracy
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None

    @property
    def bridge(self) -> str | None:
        return None if self.decision == "direct" else self.decision

    def summary(self) -> dict[str, Any]:
        """What the response metadata shows of the calibration."""
        return {
            "decision": self.decision,
            "direct_accuracy": self.direct_accuracy,
            "bridge_accuracy": self.bridge_accuracy,
            "gain": self.gain,
            "p_value": self.p_value,
            "n": self.n,
        }


@dataclass(frozen=True)
class Plan:
    """One bridged (or, for batch translation, direct) generation, fully decided."""

    task: str  # word | translate | qa | chat
    mode: str  # chain | two-step | direct
    source: str
    target: str
    bridge: str | None  # None: direct translation without a bridge (batch endpoint only)
    probability: float | None  # the index's selection probability of the bridge; None when overridden
    names: tuple[str, str, str | None]  # prompt names of source, target, bridge
    text: str  # what is rendered into the bridge: the word, sentence, passage or user turn
    question: str | None = None  # qa only
    demos: tuple[tuple[str, ...], ...] = ()  # (s, b, t) words, or (s, t) for direct plans
    answer_tokens: int = 16
    decision_source: str = "default"  # client | calibrated | hsic | default
    calibration: CalibratedRoute | None = None  # the stored decision followed, if any

    @property
    def bridge_tokens(self) -> int:
        if self.task == "word":
            return WORD_BRIDGE_TOKENS
        return max(32, min(256, len(self.text) // 2 + 16))


@dataclass(frozen=True)
class Passthrough:
    """The request goes upstream unchanged (minus the `bridgex` field); `reason` is reported in headers."""

    reason: str
    source: str | None = None
    target: str | None = None
    decision_source: str = "default"
    label: str = ""  # the metrics label of the reason

    def headers(self) -> list[tuple[str, str]]:
        reason = self.reason.replace("→", "->").encode("ascii", "replace").decode()
        return [
            ("x-bridgex-bridged", "false"),
            ("x-bridgex-reason", reason),
            ("x-bridgex-decision-source", self.decision_source),
        ]


def is_single_word(text: str) -> bool:
    return bool(text) and len(text) <= 40 and not any(ch.isspace() for ch in text.strip())


def plan_request(
    options: Options,
    text: str,
    *,
    index: IndexView,
    low_resource: frozenset[str],
    detect: Callable[[str], str | None],
    answer_tokens: int | None = None,
    force: bool = False,
    uncalibrated: str = "hsic",
) -> Plan | Passthrough:
    """Decide task, languages, route, mode and demonstrations for one input text.

    `force` (batch translation) never passes through: a pair that is not low-resource or has no bridge is
    translated directly. `uncalibrated` ("hsic" or "direct") routes pairs without a stored decision.
    Raises `RequestError` for unknown languages and impossible combinations.
    """
    for key in ("source", "target", "bridge"):
        code = getattr(options, key)
        if code is not None and not index.has_language(code):
            raise RequestError(
                f"unknown language {code!r} in bridgex.{key}; "
                f"the index has {', '.join(index.language_codes())}",
                f"bridgex.{key}",
            )
    task = options.task
    passage, question = options.passage, None
    if task == "qa":
        passage, question = split_qa(text, options.passage)
    text = clean_text(passage if task == "qa" else text)
    if not text:
        raise RequestError("the input text is empty", "messages")

    source = options.source or detect(text)
    if source is None:
        if task == "auto" and not force:
            return Passthrough("source language not detected", None, options.target, label="undetected")
        raise RequestError(
            "could not detect the source language of the input; pass bridgex.source", "bridgex"
        )
    target = options.target
    if task == "auto":
        task = ("word" if is_single_word(text) else "translate") if target and target != source else "chat"
    if task in ("word", "translate"):
        if target is None:
            raise RequestError(f"bridgex.target is required for task {task}", "bridgex.target")
        if target == source:
            raise RequestError(f"source and target are both {source!r}", "bridgex.target")
    else:
        target = target or source

    route = choose_route(
        options.bridge, source, target, index, low_resource, force, uncalibrated, options.route
    )
    if isinstance(route, Passthrough):
        return route
    bridge, probability, decision_source, calibration = route
    if bridge is None and not force and task != "word":
        # Direct for a sentence, a passage or a chat turn is the client's own request, unchanged.
        return _direct_passthrough(source, target, decision_source)

    mode = options.mode or DEFAULT_MODE
    shots = options.shots if options.shots is not None else DEFAULT_SHOTS[task]
    if bridge is None:
        mode = "direct"
        langs: tuple[str, ...] = (source, target)
    else:
        langs = (source, bridge, target)
    demos = (
        index.demonstrations(langs, shots, exclude=text) if shots and task in ("word", "translate") else ()
    )
    names = (
        index.prompt_name(source),
        index.prompt_name(target),
        index.prompt_name(bridge) if bridge else None,
    )
    return Plan(
        task=task,
        mode=mode,
        source=source,
        target=target,
        bridge=bridge,
        probability=probability,
        names=names,
        text=text,
        question=question,
        demos=demos,
        answer_tokens=answer_tokens or DEFAULT_ANSWER_TOKENS[task],
        decision_source=decision_source,
        calibration=calibration,
    )


Route = tuple[str | None, float | None, str, CalibratedRoute | None]  # bridge, probability, source, decision


def choose_route(
    client_bridge: str | None,
    source: str,
    target: str,
    index: IndexView,
    low_resource: frozenset[str],
    force: bool,
    uncalibrated: str,
    route: str = "auto",
) -> Route | Passthrough:
    """The bridge (None: direct) for a pair, and where that choice came from.

    Order: the client's `bridge`; the client's `route` (`direct`, or `hsic`: the rank-1 bridge whatever
    the calibration and the low-resource gate say); pairs without a low-resource language pass through
    (unless `force`); the pair's calibrated decision; for uncalibrated pairs the HSIC rank-1 bridge or
    direct, per `uncalibrated`. A same-language request (qa, chat) is never calibrated.
    """
    if uncalibrated not in UNCALIBRATED:
        raise ValueError(f"uncalibrated must be one of {', '.join(UNCALIBRATED)}, got {uncalibrated!r}")
    if client_bridge is not None:
        if client_bridge in (source, target):
            raise RequestError(
                f"bridgex.bridge {client_bridge!r} is the source or the target", "bridgex.bridge"
            )
        return client_bridge, None, "client", None
    if route == "direct":
        return None, None, "client", None
    if route == "hsic":
        ranked = index.best_bridge(source, target)
        if ranked is None:
            raise RequestError(f"the index has no bridge for {source}→{target}", "bridgex.route")
        return ranked[0], ranked[1], "hsic", None
    if not force and source not in low_resource and target not in low_resource:
        return Passthrough("pair is not low-resource", source, target, label="not_low_resource")
    decision = index.decision(source, target) if source != target else None
    if decision is not None:
        bridge = decision.bridge
        probability = index.bridge_probability(source, target, bridge) if bridge else None
        return bridge, probability, "calibrated", decision
    if uncalibrated == "direct":
        return None, None, "default", None
    found = index.best_bridge(source, target)
    if found is None:
        if force:
            return None, None, "default", None
        return Passthrough(
            f"no bridge in the index for {source}→{target}", source, target, "hsic", label="no_bridge"
        )
    return found[0], found[1], "hsic", None


def _direct_passthrough(source: str, target: str, decision_source: str) -> Passthrough:
    if decision_source == "calibrated":
        return Passthrough(
            f"calibrated decision for {source}→{target}: direct",
            source,
            target,
            decision_source,
            label="calibrated_direct",
        )
    return Passthrough(
        f"uncalibrated pair {source}→{target}: direct by configuration",
        source,
        target,
        decision_source,
        label="uncalibrated_direct",
    )


def direct_plan(plan: Plan) -> Plan:
    """The direct route for a bridged plan: `{S}:"w"→{T}:"` with the same demonstrations minus the bridge."""
    s, t, _b = plan.names
    demos = tuple((d[0], d[-1]) for d in plan.demos) if plan.bridge is not None else plan.demos
    return replace(plan, mode="direct", bridge=None, probability=None, names=(s, t, None), demos=demos)


def split_qa(text: str, passage: str | None) -> tuple[str, str]:
    """(passage, question) from `bridgex.passage` or from a user turn "passage<blank line>question"."""
    if passage:
        return passage, text.strip()
    head, sep, tail = text.strip().rpartition("\n\n")
    if not sep or not head.strip() or not tail.strip():
        raise RequestError(
            "task qa needs a passage: pass bridgex.passage, or put the passage and then the question in the "
            "user turn separated by a blank line",
            "bridgex.passage",
        )
    return head.strip(), tail.strip()


_SPACE = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """One line: the chain format is line-based and every call stops at a newline."""
    return _SPACE.sub(" ", text).strip()


# ---------------------------------------------------------------------------------------------------------
# Prompts


def _answer_label(plan: Plan) -> str:
    t = plan.names[1]
    return {"qa": f"{t} answer", "chat": f"{t} reply"}.get(plan.task, t)


def demo_lines(plan: Plan) -> str:
    s, t, b = plan.names
    if plan.bridge is None:
        return "".join(f'{s}:"{d[0]}"{ARROW}{t}:"{d[1]}"\n' for d in plan.demos)
    return "".join(f'{s}:"{d[0]}"{ARROW}{b}:"{d[1]}"{ARROW}{t}:"{d[2]}"\n' for d in plan.demos)


def bridge_prompt(plan: Plan) -> str:
    """The prompt whose continuation is the bridge rendering (two-step call 1, chain's single call)."""
    s, _t, b = plan.names
    head = f'Question:"{clean_text(plan.question)}"\n' if plan.question else ""
    if plan.bridge is None:
        return f'{demo_lines(plan)}{head}{s}:"{plan.text}"{ARROW}{_answer_label(plan)}:"'
    return f'{demo_lines(plan)}{head}{s}:"{plan.text}"{ARROW}{b}:"'


def bridge_close(plan: Plan) -> str:
    """What follows the bridge rendering and opens the answer."""
    return f'"{ARROW}{_answer_label(plan)}:"'


def answer_prompt(plan: Plan, bridge_text: str) -> str:
    return bridge_prompt(plan) + bridge_text + bridge_close(plan)


# ---------------------------------------------------------------------------------------------------------
# Upstream request bodies


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


@dataclass(frozen=True)
class Step:
    """One upstream call: `path` and JSON `body`."""

    path: str
    body: dict


def uses_chat_upstream(plan: Plan, req: ClientRequest) -> bool:
    """qa and chat from the chat endpoint are answered through the model's chat template."""
    return req.endpoint == "chat" and plan.task in ("qa", "chat")


def _completion(req: ClientRequest, prompt: str, max_tokens: int, stop: list[str]) -> Step:
    body = {"model": req.model, "prompt": prompt, "max_tokens": max_tokens, "stop": stop, "stream": False}
    body.update(req.sampling)
    return Step("/v1/completions", body)


def _chat_instruction(plan: Plan) -> str:
    _s, t, b = plan.names
    what = "the passage" if plan.task == "qa" else "my message"
    then = "answer the question" if plan.task == "qa" else "reply to it"
    body = f"{plan.text}\n\n{plan.question}" if plan.question else plan.text
    return f'{body}\n\n(First write {what} in {b} as {b}:"…", then {then} in {t} as {t}:"…".)'


def _chat(req: ClientRequest, plan: Plan, prefill: str, max_tokens: int, stop: list[str] | None) -> Step:
    messages = list(req.messages)
    last = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    messages = [*messages[:last], {"role": "user", "content": _chat_instruction(plan)}, *messages[last + 1 :]]
    messages.append({"role": "assistant", "content": prefill})
    body = {
        "model": req.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "stream": False,
        "add_generation_prompt": False,
        "continue_final_message": True,
    }
    if stop:
        body["stop"] = stop
    body.update(req.sampling)
    return Step("/v1/chat/completions", body)


def first_step(plan: Plan, req: ClientRequest) -> Step:
    """Two-step: the bridge rendering. Chain: bridge rendering and answer. Direct: the answer."""
    answer = req.max_tokens or plan.answer_tokens
    if plan.mode == "direct":
        return _completion(req, bridge_prompt(plan), answer, ['"', "\n"])
    if uses_chat_upstream(plan, req):
        b = plan.names[2]
        if plan.mode == "two-step":
            return _chat(req, plan, f'{b}:"', plan.bridge_tokens, ['"', "\n"])
        return _chat(req, plan, f'{b}:"', plan.bridge_tokens + answer + 8, None)
    if plan.mode == "two-step":
        return _completion(req, bridge_prompt(plan), plan.bridge_tokens, ['"', "\n"])
    return _completion(req, bridge_prompt(plan), plan.bridge_tokens + answer + 8, ["\n"])


def answer_step(plan: Plan, req: ClientRequest, bridge_text: str) -> Step:
    """The answer, with the bridge rendering in the prompt (two-step call 2, chain's continuation)."""
    answer = req.max_tokens or plan.answer_tokens
    if uses_chat_upstream(plan, req):
        _s, t, b = plan.names
        return _chat(req, plan, f'{b}:"{bridge_text}"\n{t}:"', answer, None)
    return _completion(req, answer_prompt(plan, bridge_text), answer, ['"', "\n"])


# ---------------------------------------------------------------------------------------------------------
# Reading the model's output


def parse_chain(plan: Plan, req: ClientRequest, text: str) -> tuple[str, str | None]:
    """(bridge rendering, answer or None) from a chain call's output."""
    if uses_chat_upstream(plan, req):
        marker = f'\n{plan.names[1]}:"'
        head, sep, tail = text.partition(marker)
        bridge = head.rstrip().removesuffix('"')
        return bridge.strip(), (clean_answer(tail) if sep else None)
    head, sep, tail = text.partition(bridge_close(plan))
    if sep:
        answer = tail.split('"', 1)[0].strip()
        return head.strip(), answer
    return head.split('"', 1)[0].strip(), None


def clean_answer(text: str) -> str:
    """Drop the closing quote and what a model writes after it."""
    text = text.strip()
    if text.endswith('"'):
        text = text[:-1]
    return text.split('"\n', 1)[0].strip()


def clean_bridge(text: str) -> str:
    return text.split('"', 1)[0].strip()


def is_copy(source_text: str, bridge_text: str) -> bool:
    """One text is the other after `normalise_word` (Gemma 3 270M copied 55–63% of source words)."""
    a = normalise_word(source_text)
    return bool(a) and a == normalise_word(bridge_text)


def copy_reason(source_text: str, bridge_text: str | None, answer: str) -> str | None:
    """Why a bridged answer is a copy, or None: `bridge_is_source`, `answer_is_source`, `answer_is_bridge`."""
    if bridge_text and is_copy(source_text, bridge_text):
        return "bridge_is_source"
    if is_copy(source_text, answer):
        return "answer_is_source"
    if bridge_text and is_copy(bridge_text, answer):
        return "answer_is_bridge"
    return None


# ---------------------------------------------------------------------------------------------------------
# Outcome and metadata


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


@dataclass
class Outcome:
    """The final answer of one plan and how it was reached."""

    plan: Plan
    answer: str
    bridge_text: str | None
    finish_reason: str = "stop"
    calls: int = 1
    fallback: str | None = None  # "copy": the answer came from the direct route after a copy
    fallback_reason: str | None = None  # see `copy_reason`
    bridged_answer: str | None = None  # the bridged route's answer, replaced by the fallback

    @property
    def bridge_copied(self) -> bool:
        return self.bridge_text is not None and is_copy(self.plan.text, self.bridge_text)

    @property
    def route(self) -> str:
        """Where the final answer came from: `bridge` or `direct`."""
        return "direct" if self.plan.bridge is None or self.fallback else "bridge"

    def metadata(self) -> dict[str, Any]:
        p = self.plan
        meta = {
            "task": p.task,
            "source": p.source,
            "target": p.target,
            "bridge": p.bridge,
            "probability": p.probability,
            "mode": p.mode,
            "shots": len(p.demos),
            "bridge_text": self.bridge_text,
            "bridge_copied": self.bridge_copied,
            "calls": self.calls,
            "route": self.route,
            "decision_source": p.decision_source,
            "fallback": self.fallback,
        }
        if self.fallback:
            meta["fallback_reason"] = self.fallback_reason
            meta["bridged_answer"] = self.bridged_answer
        if p.calibration is not None:
            meta["calibration"] = p.calibration.summary()
        return meta


def choice_text(step: Step, response: dict, index: int = 0) -> tuple[str, str]:
    """(text, finish_reason) of choice `index` of an upstream response to `step`."""
    choices = response.get("choices") or []
    choice = next((c for c in choices if c.get("index") == index), None)
    if choice is None:
        choice = choices[index] if index < len(choices) else {}
    if step.path.endswith("/chat/completions"):
        text = (choice.get("message") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason") or "stop"


def headers_for(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """`x-bridgex-*` response headers (ASCII only: the bridge rendering stays in the body).

    `x-bridgex-bridged` is true when the final answer came through a bridge (`route` is `bridge`)."""
    route = meta.get("route", "bridge")
    out = [("x-bridgex-bridged", "true" if route == "bridge" else "false")]
    for key in ("task", "source", "target", "bridge", "mode", "route", "decision_source", "fallback"):
        if meta.get(key) is not None:
            out.append((f"x-bridgex-{key.replace('_', '-')}", str(meta[key])))
    if meta.get("probability") is not None:
        out.append(("x-bridgex-probability", f"{meta['probability']:.6g}"))
    out.append(("x-bridgex-calls", str(meta.get("calls", 1))))
    return out
