"""Upstream steps: a plan → the request bodies sent upstream, and the model's output read back.

`two-step` asks for the bridge rendering (stop at `"` or newline) and then for the answer with the rendering
in the prompt. `chain` asks once and lets the model write `b"→{T}:"t`; if it stops before the answer (no
demonstrations, or a model that ignores the format) the answer is asked for by a continuation call whose
prompt extends the first one, so the prefix cache serves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .extract import extract_translation
from .plan import Plan
from .prompts import answer_prompt, bridge_close, bridge_prompt
from .wire import ClientRequest


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


# -- chat style (plan.chat_style): words and sentences through the model's chat template ---------------
CHAT_MARGIN_TOKENS = 16  # room for a preamble line that `extract_translation` drops
WORD_ANSWER_WORDS = 3  # a word's answer longer than this with quotes in it is a sentence about the word
_QUOTED = re.compile(r'["“«]\s*([^"”»]+?)\s*["”»]')


def _ask(task: str, source: str, target: str, text: str) -> dict:
    if task == "word":
        content = f'Translate the {source} word "{text}" into {target}. Reply with the translation only.'
    else:
        content = (
            f"Translate the following {source} text into {target}. Reply with the translation only.\n\n{text}"
        )
    return {"role": "user", "content": content}


def _chat_translation(
    req: ClientRequest, plan: Plan, legs: tuple[int, int], text: str, max_tokens: int
) -> Step:
    """One chat call translating `text` from language `legs[0]` to `legs[1]` (0 source, 1 target, 2 bridge
    of the plan), the plan's demonstrations in those two languages as earlier turns."""
    names = plan.english
    columns = {0: 0, 2: 1, 1: -1}  # where each language sits in a bridged demonstration (s, b, t)
    if plan.bridge is None:
        columns = {0: 0, 1: -1}
    a, b = columns[legs[0]], columns[legs[1]]
    messages: list[dict] = []
    for demo in plan.demos:
        messages += [
            _ask("word", names[legs[0]], names[legs[1]], demo[a]),
            {"role": "assistant", "content": demo[b]},
        ]
    messages.append(_ask(plan.task, names[legs[0]], names[legs[1]], text))
    body = {
        "model": req.model,
        "messages": messages,
        "max_tokens": max_tokens + CHAT_MARGIN_TOKENS,
        "stream": False,
    }
    body.update(req.sampling)
    return Step("/v1/chat/completions", body)


def read_translation(plan: Plan, text: str, into: int) -> str:
    """A chat-style answer read back: the translation only (`extract_translation`), into language `into`
    (1 target, 2 bridge); a word is the first line of it, or, when that line is a sentence about the word
    (`"kitabu" translates to English as "book".`), its last quoted part."""
    names = tuple(n for n in (plan.english[into], plan.names[into]) if n)
    found = extract_translation(text, names)
    if plan.task != "word":
        return found
    line = found.split("\n", 1)[0].strip()
    quoted = _QUOTED.findall(line)
    if len(line.split()) > WORD_ANSWER_WORDS and quoted:
        return quoted[-1].strip()
    return line


def read_direct(plan: Plan, text: str) -> str:
    """The answer of a direct step (a direct plan, or the copy fallback's direct call)."""
    return read_translation(plan, text, 1) if plan.chat_style else clean_bridge(text)


def read_bridge(plan: Plan, text: str) -> str:
    """The bridge rendering of a two-step plan's first call."""
    return read_translation(plan, text, 2) if plan.chat_style else clean_bridge(text)


def read_answer(plan: Plan, text: str) -> str:
    """The answer of a second call (two-step call 2, chain's continuation)."""
    return read_translation(plan, text, 1) if plan.chat_style else clean_answer(text)


def first_step(plan: Plan, req: ClientRequest) -> Step:
    """Two-step: the bridge rendering. Chain: bridge rendering and answer. Direct: the answer."""
    answer = req.max_tokens or plan.answer_tokens
    if plan.chat_style:
        if plan.one_call:
            return _chat_translation(req, plan, (0, 1), plan.text, answer)
        return _chat_translation(req, plan, (0, 2), plan.text, plan.bridge_tokens)
    if plan.one_call:
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
    if plan.chat_style:  # the pivot: the bridge rendering translated into the target
        return _chat_translation(req, plan, (2, 1), bridge_text, answer)
    if uses_chat_upstream(plan, req):
        _s, t, b = plan.names
        return _chat(req, plan, f'{b}:"{bridge_text}"\n{t}:"', answer, None)
    return _completion(req, answer_prompt(plan, bridge_text), answer, ['"', "\n"])


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
