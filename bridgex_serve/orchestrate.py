"""The async core shared by the proxy and the vLLM plugin: plans + `call_upstream` → outcomes.

No web framework, no network code: the shell passes `call(path, body) -> dict` (an HTTP call to vLLM in
the proxy, an in-process ASGI call in the plugin) which raises `UpstreamError` for a non-2xx answer.
Completion calls of many plans that share their parameters are merged into one upstream request with a
list of prompts (vLLM schedules them as one batch), in chunks of `max_batch`, run concurrently.

A plan takes at most three rounds: the bridged call (chain, or two-step's first), the answer call (two-step,
or a chain that stopped after the bridge), and the copy fallback: the direct route for word and translate
answers that copy the source or the bridge rendering (`copies.copy_reason`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from .copies import COPY_FALLBACK_TASKS, copy_reason
from .limits import off_loop
from .outcome import Outcome
from .plan import Plan, direct_plan
from .steps import (
    Step,
    answer_step,
    choice_text,
    first_step,
    parse_chain,
    read_answer,
    read_bridge,
    read_direct,
)
from .wire import ClientRequest, Usage

CallUpstream = Callable[[str, dict], Awaitable[dict]]


class UpstreamError(Exception):
    """The upstream answered with an error status, or could not be reached (status 502/504)."""

    def __init__(self, status: int, body: bytes | dict | None = None, message: str | None = None):
        super().__init__(message or f"upstream answered {status}")
        self.status = status
        self.body = body
        self.message = message or f"upstream answered {status}"


def checked(response: Any) -> dict:
    """`response` if it has the shape of a completion (a `choices` list of objects whose `text` or
    `message.content` are strings or null), else a 502: the upstream is not speaking OpenAI."""
    choices = response.get("choices") if isinstance(response, dict) else None
    ok = isinstance(choices, list)
    for choice in choices if ok else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        ok = ok and isinstance(choice, dict) and isinstance(choice.get("text"), str | None)
        ok = ok and (
            message is None or (isinstance(message, dict) and isinstance(message.get("content"), str | None))
        )
        ok = (
            ok
            and isinstance(choice.get("index", 0), int)
            and isinstance(choice.get("finish_reason"), str | None)
        )
    usage = response.get("usage") if ok else None
    if usage is not None:
        counts = (
            (usage.get(k) or 0 for k in ("prompt_tokens", "completion_tokens"))
            if isinstance(usage, dict)
            else [None]
        )
        ok = all(isinstance(n, int) and not isinstance(n, bool) for n in counts)
    if not ok:
        raise UpstreamError(502, message="the upstream answered JSON that is not a completion")
    return response


async def dispatch(
    steps: Sequence[Step], call: CallUpstream, usage: Usage, *, max_batch: int = 32
) -> list[tuple[str, str]]:
    """Run `steps` upstream and return (text, finish_reason) per step, in order.

    Completion steps whose bodies differ only in `prompt` are merged into requests of up to `max_batch`
    prompts; chat steps go one by one. All requests run concurrently (the shell bounds concurrency).
    """
    results: list[tuple[str, str] | None] = [None] * len(steps)
    groups: dict[bytes, list[int]] = {}
    singles: list[int] = []
    for i, step in enumerate(steps):
        if step.path.endswith("/completions") and not step.path.endswith("/chat/completions"):
            rest = {k: v for k, v in step.body.items() if k != "prompt"}
            groups.setdefault(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS), []).append(i)
        else:
            singles.append(i)

    async def run_single(i: int) -> None:
        response = checked(await call(steps[i].path, steps[i].body))
        usage.add(response.get("usage"))
        results[i] = choice_text(steps[i], response)

    async def run_group(members: list[int]) -> None:
        first = steps[members[0]]
        prompts = [steps[i].body["prompt"] for i in members]
        body = dict(first.body, prompt=prompts if len(prompts) > 1 else prompts[0])
        response = checked(await call(first.path, body))
        usage.add(response.get("usage"))
        for j, i in enumerate(members):
            results[i] = choice_text(first, response, j)

    jobs: list[Awaitable[None]] = [run_single(i) for i in singles]
    for members in groups.values():
        for start in range(0, len(members), max_batch):
            jobs.append(run_group(members[start : start + max_batch]))
    if len(jobs) == 1:
        await jobs[0]
    else:
        await asyncio.gather(*jobs)
    return [r if r is not None else ("", "stop") for r in results]


async def run_plans(
    plans: Sequence[Plan],
    req: ClientRequest,
    call: CallUpstream,
    *,
    max_batch: int = 32,
    copy_fallback: bool = True,
) -> tuple[list[Outcome], Usage]:
    """Produce the final answer of every plan: at most three rounds of (batched) upstream calls."""
    usage = Usage()
    first = [first_step(p, req) for p in plans]
    replies = await dispatch(first, call, usage, max_batch=max_batch)
    outcomes: list[Outcome] = []
    pending: list[int] = []
    for i, (plan, (text, finish)) in enumerate(zip(plans, replies, strict=True)):
        if plan.one_call:
            outcomes.append(Outcome(plan, read_direct(plan, text), None, finish, 1))
            continue
        if plan.mode == "two-step":  # chat-style bridged plans are always two-step
            bridge, answer = read_bridge(plan, text), None
        else:
            bridge, answer = parse_chain(plan, req, text)
        outcomes.append(Outcome(plan, answer or "", bridge, finish, 1))
        if answer is None:
            pending.append(i)
    if pending:
        second = [answer_step(plans[i], req, outcomes[i].bridge_text or "") for i in pending]
        replies = await dispatch(second, call, usage, max_batch=max_batch)
        for i, (text, finish) in zip(pending, replies, strict=True):
            outcome = outcomes[i]
            outcome.answer = read_answer(plans[i], text)
            outcome.finish_reason = finish
            outcome.calls = 2
    if copy_fallback:
        await fall_back_on_copies(outcomes, req, call, usage, max_batch=max_batch)
    return outcomes, usage


async def fall_back_on_copies(
    outcomes: Sequence[Outcome], req: ClientRequest, call: CallUpstream, usage: Usage, *, max_batch: int = 32
) -> None:
    """Answer again by the direct route where a bridged word or translation copied (one call per outcome,
    batched); the outcome records the fallback, its reason and the replaced answer."""
    checked_outcomes = [
        o for o in outcomes if o.plan.bridge is not None and o.plan.task in COPY_FALLBACK_TASKS
    ]
    size = sum(len(o.plan.text) for o in checked_outcomes)  # normalising long texts is CPU work: off the loop
    reasons = await off_loop(
        lambda: [copy_reason(o.plan.text, o.bridge_text, o.answer) for o in checked_outcomes], size
    )
    redo = [(o, r) for o, r in zip(checked_outcomes, reasons, strict=True) if r is not None]
    if not redo:
        return
    directs = [direct_plan(o.plan) for o, _ in redo]
    steps = [first_step(p, req) for p in directs]
    replies = await dispatch(steps, call, usage, max_batch=max_batch)
    for (outcome, reason), direct, (text, finish) in zip(redo, directs, replies, strict=True):
        outcome.bridged_answer = outcome.answer
        outcome.answer = read_direct(direct, text)
        outcome.finish_reason = finish
        outcome.calls += 1
        outcome.fallback = "copy"
        outcome.fallback_reason = reason


def bounded(call: CallUpstream, semaphore: asyncio.Semaphore) -> CallUpstream:
    """`call` limited to the semaphore's number of concurrent upstream requests."""

    async def limited(path: str, body: dict) -> Any:
        async with semaphore:
            return await call(path, body)

    return limited
