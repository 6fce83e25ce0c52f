"""Prompt text (method §6), one line per chain, the model's answer always opened by `:"` (one Gemma token):

{S}:"{w}"→{B}:"{b}"→{T}:"{t}"        word (BLI) and sentence translation
Question:"{q}"                      qa only: the question comes first so one call can answer it
{S}:"{p}"→{B}:"{b}"→{T} answer:"{a}"
{S}:"{x}"→{B}:"{b}"→{T} reply:"{a}"   chat through the completions endpoint
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .plan import Plan, clean_example, clean_text

ARROW = "→"


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


def with_examples(plan: Plan, examples: Sequence[tuple[str, str]]) -> Plan:
    """A direct completion-style plan with (source, target) sentence examples in front of its demonstrations
    (issue 20's distilled route: one direct call, examples made offline by a bridged route).

    The examples keep the order given and become lines of the same `{S}:"x"→{T}:"y"` format, each made one
    line (`plan.clean_example`); the same examples for every text of a pair give every prompt the same prefix
    (what vLLM's prefix cache serves). Pure. A ValueError for a bridged or chat-style plan (their
    demonstrations are word tuples or chat turns), an empty side, or a target with `"`."""
    if plan.bridge is not None or plan.chat_style:
        raise ValueError("sentence examples go in front of a direct completion-style plan only")
    lines = [clean_example(source, target) for source, target in examples]
    return replace(plan, demos=(*lines, *plan.demos))
