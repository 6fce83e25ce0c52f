"""The copy rule (word and translate): when the bridge rendering is the source itself, or the answer is the
source or the bridge rendering (compared in the one comparison form, `bridgex_index.words.normalise_word`),
the answer is asked for again by the direct route, with the same demonstrations minus the bridge
(`plan.direct_plan`).
"""

from __future__ import annotations

from bridgex_index.words import normalise_word

COPY_FALLBACK_TASKS = ("word", "translate")  # qa and chat answers are not translations of the input


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
